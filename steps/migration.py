"""The guide's Step-by-Step Migration: each step performed (filled in by the migrate issue)."""
