"""gnn-mf: graph propagation over the user-item graph on top of matrix factorisation."""
