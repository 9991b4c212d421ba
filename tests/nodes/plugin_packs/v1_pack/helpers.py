import torch


def scale(image: torch.Tensor, amount: float) -> torch.Tensor:
    return torch.clamp(image * amount, 0.0, 1.0)
