"""Conure stage ret_t1: retrain T1 (next item) on its own 30% of every conv kernel; embeddings and
LayerNorms stay frozen. The architecture and split come from the tp_t1 checkpoint.

Starts from <out_dir>/Models/tp_t1 (run conure_tp_t1.py first), writes <out_dir>/Models/ret_t1.
Edit the block below or override any entry: python conure_ret_t1.py --epochs=1
"""
# ------------------------------ hyperparameters ------------------------------
data_dir = "Data/Session"  # TTL files (docs/design.md section 2)
out_dir = "Data"           # checkpoints: <out_dir>/Models/<stage>/, metrics: <out_dir>/Results/
epochs = 10                # the cap when `valid` stops the stage early
valid = 0.0                # share of the training users set aside to choose the best epoch (0: the
                           # release's fixed schedule); the 20% held-out split is never used for it
patience = 0               # with valid: stop after this many evaluations without improvement (0: never)
valid_positions = 1        # score each validation user's last this many items (held-out: the last)
batch_size = 32
learning_rate = 1e-3
seed = 0                   # data order, negative sampling
num_sampled_ratio = 0.2    # sampled-softmax negatives per step, as a share of the vocabulary
full_softmax = False       # True: exact softmax over all items instead of the sampled one
exclude_padding = False    # True: padding targets do not count in the loss (the release counts them)
l2 = None                  # L2 penalty on T1's output weights (None: tp_t1's; the release has none)
eval_every = 1             # epochs between evaluations: on the validation slice, else held-out
eval_cap = 0               # evaluate on at most this many users (0: all)
# -----------------------------------------------------------------------------

if __name__ == "__main__":
    import stage

    stage.main("ret_t1", globals())
