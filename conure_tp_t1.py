"""Conure stage tp_t1: train the whole model on T1 (next item), then prune: T1 keeps 30% of every
conv kernel, the rest stays free for later tasks.

Writes <out_dir>/Models/tp_t1 and <out_dir>/Results/tp_t1.json; next: conure_ret_t1.py.
Edit the block below or override any entry: python conure_tp_t1.py --epochs=1 --channels=64
"""
# ------------------------------ hyperparameters ------------------------------
data_dir = "Data/Session"  # TTL files (docs/design.md section 2)
out_dir = "Data"           # checkpoints: <out_dir>/Models/<stage>/, metrics: <out_dir>/Results/
epochs = 4                 # the cap when `valid` stops the stage early
valid = 0.0                # share of the training users set aside to choose the best epoch (0: the
                           # release's fixed schedule); the 20% held-out split is never used for it
patience = 0               # with valid: stop after this many evaluations without improvement (0: never)
valid_positions = 1        # score each validation user's last this many items (held-out: the last)
batch_size = 32
learning_rate = 1e-3
seed = 0                   # weight init, data order, negative sampling
channels = 256             # embedding and residual width
dilations = [1, 4, 1, 4, 1, 4, 1, 4]  # one residual block per entry: convs with dilation d, 2d
kernel_size = 3
split_seed = 10            # seeded 80/20 split of the users, as the release
prune_ratio = 0.7          # share of the weights left free for later tasks
num_sampled_ratio = 0.2    # sampled-softmax negatives per step, as a share of the vocabulary
full_softmax = False       # True: exact softmax over all items instead of the sampled one
exclude_padding = False    # True: padding targets do not count in the loss (the release counts them)
l2 = 0.0                   # L2 penalty on T1's output weights (the release has none)
embedding = "frozen"       # beyond the release (docs/extension.md): "owned" shares the item embedding among
                           # tasks by owner maps, "delta" lets each later task add a low-rank table of its own
eval_every = 1             # epochs between evaluations: on the validation slice, else held-out
eval_cap = 0               # evaluate on at most this many users (0: all)
# -----------------------------------------------------------------------------

if __name__ == "__main__":
    import stage

    stage.main("tp_t1", globals())
