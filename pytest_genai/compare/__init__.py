"""Fair comparisons: a candidate run paired with a baseline case by case (`pairing.py`), with bootstrap CIs and
McNemar (`comparison.py`: numpy loads on first use), the preference judge (`judge.py`), the baseline a run is
compared with (`baseline.py`), the comparison of a finished session (`measure.py`) and the statistics' names
(`names.py`). Import the module you need: this package imports nothing, so its light parts stay light."""
