"""Conure stage tp_t6: train T6 (life status) on the weights earlier tasks left free, then prune: T6 keeps 5.04%
of every kernel.

Starts from <out_dir>/Models/ret_t5 (run conure_ret_t5.py first), writes <out_dir>/Models/tp_t6.
Edit the block below or override any entry: python conure_tp_t6.py --epochs=5
"""
# ------------------------------ hyperparameters ------------------------------
data_dir = "Data/Session"  # TTL files (docs/design.md section 2)
out_dir = "Data"           # checkpoints: <out_dir>/Models/<stage>/, metrics: <out_dir>/Results/
epochs = 30                # the cap when `valid` stops the stage early
valid = 0.0                # share of the training examples set aside to choose the best epoch (0: the
                           # release's fixed schedule); the 20% held-out split is never used for it
patience = 0               # with valid: stop after this many evaluations without improvement (0: never)
batch_size = 512
learning_rate = 1e-4
seed = 0
prune_ratio = 0.7          # share of the free weights left free for later tasks
l2 = None                  # L2 penalty on the life status label table (None: its value in tasks.py)
full_softmax = False       # True: softmax over all labels instead of the logistic loss
pooling = "last"           # beyond the release (docs/extension.md): "mean" or "attention" over every position
task_dropout = 0.0         # ... dropout on the task's representation before its head
shared_lr_scale = 1.0      # ... the updates of everything but the head, scaled by this
eval_every = 5             # epochs between evaluations: on the validation slice, else held-out
eval_cap = 0               # evaluate on at most this many examples (0: all)
# -----------------------------------------------------------------------------

if __name__ == "__main__":
    import stage

    stage.main("tp_t6", globals())
