"""Copies and similar shots, in two stages: k-NN candidates from region codes, then local features with RANSAC.

Stage one (`candidate_pairs`): every photo asks the "dup" graph (21 region codes per photo, `encoders/dup.py`) for
the nearest codes to its whole picture and to its mirror image; a crop meets one of its original's regions, a
bordered copy was trimmed before it was described. Each photo keeps at most `CANDIDATES` other photos: no all-pairs
work, and verification stays bounded per photo. Stage two (`Verifier`): ORB keypoints matched and fitted with RANSAC
(`encoders/keypoints.py`); a copy aligns with many inliers and, once aligned, agrees pixel for pixel up to tone; a
similar shot (a burst: same scene, another moment) aligns but its pixels differ more. The alignment also says how
the copy was made (`explain.py`). Groups: union-find over verified pairs; each group names the copy to keep.

`candidates.py` is stage one, `verify.py` stage two and the grouping, `groups.py` what a group is and how each
member is described, `queries.py` the two queries against a gallery (`gallery_groups`, `find_in_gallery`).
"""
