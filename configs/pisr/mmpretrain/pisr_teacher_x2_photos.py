# PISR step 1: encoder (sees the HR image) + FSRCNN decoder, L1 + 1e-4 imitation.
_base_ = '../_base_/sr_photos_x2.py'

model = dict(type='PISRTeacher', scale=2, imitation_weight=1e-4)
