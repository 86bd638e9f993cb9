"""Kernel every app may import: money, crypto, encrypted fields, parties. Knows no orders, payments or ledgers."""
