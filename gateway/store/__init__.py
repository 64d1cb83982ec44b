"""All SQL: one module per aggregate; async functions taking an AsyncConnection; callers own transactions."""
