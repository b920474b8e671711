"""RAG: corpus loading, token-based chunking, pinned embeddings, a fingerprinted faiss index, retrieval.
numpy, torch, transformers and faiss are imported inside the functions that use them."""
