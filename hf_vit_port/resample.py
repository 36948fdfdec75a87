"""Resampling of learned spatial parameters: position-embedding grids and patch-embedding kernels."""

import torch
import torch.nn.functional as F


def resample_position_grid(grid: torch.Tensor, new_size: tuple[int, int], mode: str = "official") -> torch.Tensor:
    """
    Resize a grid of position embeddings `[height, width, dim]` to `new_size` (height, width).

    `"official"` reproduces the original code, which zooms the grid linearly with `scipy.ndimage.zoom(order=1)`:
    output corners land on input corners, which is bilinear interpolation with `align_corners=True`.
    `"bilinear"` and `"bicubic"` use half-pixel centres, as timm and transformers do.
    """
    if tuple(grid.shape[:2]) == tuple(new_size):
        return grid
    if mode == "official":
        torch_mode, align_corners = "bilinear", True
    elif mode in ("bilinear", "bicubic"):
        torch_mode, align_corners = mode, False
    else:
        raise ValueError(f"Unknown position-embedding resample mode {mode!r}; use 'official', 'bilinear' or 'bicubic'.")
    # Interpolate in float64 so float32 grids match the original's double-precision scipy zoom to the last bit.
    channels_first = grid.permute(2, 0, 1).unsqueeze(0).to(torch.float64)
    resized = F.interpolate(channels_first, size=tuple(new_size), mode=torch_mode, align_corners=align_corners)
    return resized[0].permute(1, 2, 0).to(grid.dtype)


def resample_position_embeddings(
    position_embeddings: torch.Tensor,
    *,
    old_grid: tuple[int, int],
    new_grid: tuple[int, int],
    num_prefix_tokens: int,
    mode: str = "official",
) -> torch.Tensor:
    """Resample `[1, prefix + h*w, dim]` position embeddings to another grid, keeping the prefix (CLS) rows as they are."""
    prefix, patches = position_embeddings[:, :num_prefix_tokens], position_embeddings[:, num_prefix_tokens:]
    dim = position_embeddings.shape[-1]
    expected = old_grid[0] * old_grid[1]
    if patches.shape[1] != expected:
        raise ValueError(
            f"position embeddings hold {patches.shape[1]} patch rows but the grid {old_grid[0]}x{old_grid[1]} "
            f"needs {expected}"
        )
    grid = resample_position_grid(patches.reshape(*old_grid, dim), new_grid, mode)
    return torch.cat([prefix, grid.reshape(1, -1, dim)], dim=1)


def _resize_matrix(old_size: tuple[int, int], new_size: tuple[int, int]) -> torch.Tensor:
    """The linear map `[new_h*new_w, old_h*old_w]` that bilinear (anti-aliased) resizing of a patch applies."""
    basis = torch.eye(old_size[0] * old_size[1], dtype=torch.float64).reshape(-1, 1, *old_size)
    resized = F.interpolate(basis, size=new_size, mode="bilinear", align_corners=False, antialias=True)
    return resized.reshape(basis.shape[0], -1).T


def resample_patch_kernel(kernel: torch.Tensor, new_size: tuple[int, int]) -> torch.Tensor:
    """
    Resize a patch-embedding kernel `[out, in, h, w]` to a new patch size with FlexiViT's pseudo-inverse resize.

    The new kernel `w'` is chosen so that `<resize(x), w'>` matches `<x, w>` for patches `x` in the least-squares
    sense, so a model whose patches (and images) are resized together keeps its outputs.
    """
    old_size = tuple(kernel.shape[-2:])
    if old_size == tuple(new_size):
        return kernel
    resize = _resize_matrix(old_size, tuple(new_size))  # [new, old]
    pinv = torch.linalg.pinv(resize.T)  # [new, old]
    flat = kernel.to(torch.float64).reshape(-1, old_size[0] * old_size[1])
    return (flat @ pinv.T).reshape(*kernel.shape[:2], *new_size).to(kernel.dtype)
