# Fine-tuning baseline (no distillation: shows forgetting), scenes 6-2-2
# overlapped, step 0: the same model and training as DKD's step 0.
# Whole split: python tools/ciss.py <this config> (from the repository root)
_base_ = ['./dkd_fcn_r18-w16_scenes-6-2-2_step0.py']
