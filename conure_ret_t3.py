"""Conure stage ret_t3: retrain T3 (likes) on its own 14.7% of every kernel; earlier tasks stay frozen.

Starts from <out_dir>/Models/tp_t3 (run conure_tp_t3.py first), writes <out_dir>/Models/ret_t3.
Edit the block below or override any entry: python conure_ret_t3.py --epochs=5
"""
# ------------------------------ hyperparameters ------------------------------
data_dir = "Data/Session"  # TTL files (SPEC section 2)
out_dir = "Data"           # checkpoints: <out_dir>/Models/<stage>/, metrics: <out_dir>/Results/
epochs = 100
batch_size = 512
learning_rate = 1e-4
seed = 0
l2 = 0.05                  # L2 penalty on the likes target table
rho = 0.3                  # LambdaFM popularity sampler of the BPR negatives
full_softmax = False       # True: softmax over all targets instead of BPR
eval_every = 10             # epochs between held-out evaluations (0: only at the end)
eval_cap = 0               # evaluate on at most this many held-out examples (0: all)
# -----------------------------------------------------------------------------

if __name__ == "__main__":
    import stage

    stage.main("ret_t3", globals())
