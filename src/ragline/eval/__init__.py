"""Metrics as pure functions and readers for standard evaluation data."""

from ragline.eval.metrics import exact_match, f1_score, normalize_answer
from ragline.eval.qa_data import QAExample, read_qa, split_by_group

__all__ = ["QAExample", "exact_match", "f1_score", "normalize_answer", "read_qa", "split_by_group"]
