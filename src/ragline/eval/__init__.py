"""Evaluation: retrieval (BEIR) and question answering, and readers for standard data.
Answer metrics and QA pairs live in ragline.qa (training scores with them too)."""

from ragline.eval.qa_data import read_qa
from ragline.qa import QAExample, exact_match, f1_score, normalize_answer, split_by_group

__all__ = ["QAExample", "exact_match", "f1_score", "normalize_answer", "read_qa", "split_by_group"]
