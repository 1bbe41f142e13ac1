# Plain FSRCNN (d=56, s=12, m=4) trained with L1: the baseline of PISR.
_base_ = '../_base_/sr_photos_x4.py'

model = dict(type='FSRCNN', scale=4)
