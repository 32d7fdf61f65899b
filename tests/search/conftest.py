"""The search tests run tiny networks and a tiny LSTM: one torch thread avoids oversubscribing the
shared 2-core machines (with two threads per process, a loaded machine makes these tests 10x slower)."""
import torch

torch.set_num_threads(1)
