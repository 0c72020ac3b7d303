"""Conure stage ret_t6: retrain T6 (life status) on its own 5.04% of every kernel; earlier tasks stay frozen.

Starts from <out_dir>/Models/tp_t6 (run conure_tp_t6.py first), writes <out_dir>/Models/ret_t6.
Edit the block below or override any entry: python conure_ret_t6.py --epochs=5
"""
# ------------------------------ hyperparameters ------------------------------
data_dir = "Data/Session"  # TTL files (SPEC section 2)
out_dir = "Data"           # checkpoints: <out_dir>/Models/<stage>/, metrics: <out_dir>/Results/
epochs = 50
batch_size = 512
learning_rate = 1e-4
seed = 0
l2 = 0.02                  # L2 penalty on the life status label table
full_softmax = False       # True: softmax over all labels instead of the logistic loss
eval_every = 5             # epochs between held-out evaluations (0: only at the end)
eval_cap = 0               # evaluate on at most this many held-out examples (0: all)
# -----------------------------------------------------------------------------

if __name__ == "__main__":
    import stage

    stage.main("ret_t6", globals())
