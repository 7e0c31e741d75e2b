"""m6-rec: the language-model recommender of M6-Rec (behaviour and items as text)."""
