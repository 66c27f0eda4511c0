#!/bin/bash
# results/own_data.{md,json}: five-star NSMC reviews (60k, 12k per star) as your own data, on one split (a hash
# of each row's id: train 44,905, valid 3,025, test 12,070). Run from the repository root, one process at a
# time, one thread (a shared 2-core CPU), logging to a file: tools/own_data_stars.sh > logs/own_data_stars.log 2>&1
set -ex
export OMP_NUM_THREADS=1
D=${DATA:-/work/shared/data/nsmc_stars/reviews.csv}
# the TF-IDF + LR teacher (C = 1, as the reference), its logits cache, then the distilled tiny and base students
python distil.py run --data $D --finetune tfidf-lr --lr-c 1 --size tiny base --epochs 8 --device cpu
# the no-teacher baselines
python distil.py student --data $D --alpha 1 --size tiny base --epochs 8 --device cpu
python tools/own_data_report.py --data $D --peer "$(ls -d teacher_model/tfidf-lr-reviews-*)" \
    --runs runs/reviews --commands tools/own_data_stars.sh --out results/own_data
