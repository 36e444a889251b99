"""The VQ training math as pure functions: cosine quantisation with a straight-through gradient, codebook losses,
EMA codebook updates, codebook initialisation and dead-code restart.

Why not `JanusVQVAE.forward`: it decodes from argmin indices via `get_codebook_entry`, so no gradient reaches the
encoder, and its quantizer measures Euclidean distances on unnormalised vectors while `decode` reads L2-normalised
codebook entries. Here z and the codebook are both normalised and the nearest code is taken by cosine; the trainer
keeps the stored codebook rows at unit norm, where the Euclidean argmin of `JanusVQVAE.encode` picks the same code
(|z - e|^2 = |z|^2 + 1 - 2 z.e), so `encode(...).image_tokens` and `decode` reproduce training exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class Quantized:
    z_q: torch.Tensor  # (B, D, h, w) unit code vectors, straight-through: forward value = codes, gradient -> z
    z_n: torch.Tensor  # (N, D) normalised encoder outputs, N = B*h*w (row-major over b, y, x like encode's tokens)
    indices: torch.Tensor  # (N,) code per position
    commitment: torch.Tensor  # () mean |z_n - sg(e)|^2
    codebook: torch.Tensor  # () mean |sg(z_n) - e|^2 (gradient reaches the codebook only)


def nearest_codes(z_n: torch.Tensor, codebook_n: torch.Tensor) -> torch.Tensor:
    """Index of the most cosine-similar code for each row: (N, D), (K, D) unit rows -> (N,)."""
    return (z_n @ codebook_n.t()).argmax(dim=1)  # (N, K) -> (N,)


def quantize(z: torch.Tensor, codebook: torch.Tensor) -> Quantized:
    """Cosine-quantise `z` (B, D, h, w), the output of `quant_conv`, against `codebook` (K, D)."""
    b, d, h, w = z.shape
    z_n = F.normalize(z.permute(0, 2, 3, 1).reshape(-1, d), dim=1)  # (N, D)
    e_n = F.normalize(codebook, dim=1)  # (K, D)
    with torch.no_grad():
        indices = nearest_codes(z_n, e_n)  # (N,)
    e = e_n[indices]  # (N, D), carries the codebook's gradient
    commitment = (z_n - e.detach()).pow(2).sum(1).mean()
    codebook_loss = (z_n.detach() - e).pow(2).sum(1).mean()
    z_st = z_n + (e - z_n).detach()  # (N, D): value of e, gradient of z_n
    z_q = z_st.view(b, h, w, d).permute(0, 3, 1, 2)  # (B, D, h, w)
    return Quantized(z_q, z_n, indices, commitment, codebook_loss)


def ema_update(ema_sum: torch.Tensor, z_n: torch.Tensor, indices: torch.Tensor, decay: float) -> torch.Tensor:
    """One EMA k-means step on the sphere, in place on ema_sum (K, D); returns the new unit-norm codebook (K, D).

    ema_sum is the decayed running sum of the z_n (N, D) assigned to each code; on the sphere only its direction
    matters, so no counts are kept. Codes not used in this batch stay where they are.
    """
    assigned = torch.zeros_like(ema_sum).index_add_(0, indices, z_n.detach())  # (K, D)
    used = torch.bincount(indices, minlength=ema_sum.shape[0]).gt(0).unsqueeze(1)  # (K, 1)
    ema_sum.copy_(torch.where(used, decay * ema_sum + (1 - decay) * assigned, ema_sum))
    return F.normalize(ema_sum, dim=1)


def kmeans_pp_init(z_n: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeding on the sphere: k rows of z_n (N, D) spread by squared cosine distance -> (K, D)."""
    n = z_n.shape[0]
    chosen = [int(torch.randint(n, (1,), generator=generator))]
    dist = (1 - z_n @ z_n[chosen[0]]).clamp_min(0)  # (N,)
    for _ in range(k - 1):
        weights = dist.pow(2)
        if float(weights.sum()) <= 0:  # fewer distinct vectors than codes: fall back to uniform picks
            weights = torch.ones_like(dist)
        i = int(torch.multinomial(weights, 1, generator=generator))
        chosen.append(i)
        dist = torch.minimum(dist, (1 - z_n @ z_n[i]).clamp_min(0))
    return z_n[chosen].clone()  # (K, D)


def spherical_kmeans(z_n: torch.Tensor, k: int, iters: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeding then `iters` Lloyd steps by cosine: (N, D) unit rows -> (K, D) unit centroids."""
    centroids = kmeans_pp_init(z_n, k, generator)  # (K, D)
    for _ in range(iters):
        assign = nearest_codes(z_n, centroids)  # (N,)
        sums = torch.zeros_like(centroids).index_add_(0, assign, z_n)  # (K, D)
        used = torch.bincount(assign, minlength=k).gt(0).unsqueeze(1)  # (K, 1)
        centroids = torch.where(used, F.normalize(sums, dim=1), centroids)
    return centroids


def duplicate_codes(codebook: torch.Tensor, threshold: float) -> torch.Tensor:
    """Indices of codes whose cosine with an earlier code exceeds `threshold`: (K, D) unit rows -> (n,) indices.

    Two codes in one tight cluster of encoder outputs split it at random (the same black patch gets either);
    restarting the later one keeps one code per cluster.
    """
    sim = codebook @ codebook.T  # (K, K)
    sim = torch.triu(sim, diagonal=1)  # (i, j) with i < j
    return (sim > threshold).any(0).nonzero().flatten()


def restart_dead_codes(
    codebook: torch.Tensor, usage: torch.Tensor, recent: torch.Tensor, generator: torch.Generator, noise: float = 0.01,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Codes with zero `usage` (K,) are re-seeded from random rows of `recent` (M, D) encoder outputs, drawn
    uniformly or, with `weights` (M,) >= 0 (e.g. each output's distance to its code), in proportion to them, so
    new codes go where quantisation is worst instead of splitting the black background once more.

    Returns the dead codes' indices (possibly empty); `codebook` (K, D) is changed in place and stays unit-norm.
    """
    dead = (usage <= 0).nonzero().flatten()  # (n_dead,)
    if dead.numel() == 0:
        return dead
    if weights is not None and float(weights.sum()) > 0:
        picks = torch.multinomial(weights.double(), dead.numel(), replacement=True, generator=generator)
    else:
        picks = torch.randint(recent.shape[0], (dead.numel(),), generator=generator)
    jitter = noise * torch.randn(dead.numel(), codebook.shape[1], generator=generator)
    codebook[dead] = F.normalize(recent[picks] + jitter, dim=1)
    return dead


def patch_groups(pixels: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, 3, h*patch, w*patch) in [-1, 1] -> (B*h*w,) ids, equal exactly for patches with the same pixels; rows
    ordered (b, y, x) like the quantizer's."""
    patches = F.unfold(pixels.detach(), kernel_size=patch, stride=patch)  # (B, 3*p*p, h*w)
    patches = patches.transpose(1, 2).reshape(-1, patches.shape[1])  # (B*h*w, 3*p*p)
    keys = torch.round((patches + 1) * 127.5).to(torch.int16)  # exact pixel values, [-1, 1] -> 0..255
    return torch.unique(keys, dim=0, return_inverse=True)[1]


def same_content_codes(indices: torch.Tensor, groups: torch.Tensor, num_codes: int,
                       purity: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Codes that duplicate another code's content: (N,) codes and (N,) patch-content ids -> ((n,) code indices,
    (m,) the contents that have a pure code).

    A code is "pure" when at least `purity` of the patches assigned to it share one content; of several pure codes
    with the same content, all but the most used are returned (to be restarted elsewhere), so one black patch
    has one code instead of four. Restarts should not be seeded from patches of an owned content either (they would
    split it again).
    """
    pairs = indices * (int(groups.max()) + 1) + groups  # (N,) joint id of (code, content)
    joint, counts = torch.unique(pairs, return_counts=True)
    code, content = joint // (int(groups.max()) + 1), joint % (int(groups.max()) + 1)
    total = torch.bincount(indices, minlength=num_codes)  # (K,)
    best = torch.zeros(num_codes, dtype=torch.long).scatter_reduce(0, code, counts, "amax")  # (K,) top content count
    pure_code = code[(counts == best[code]) & (counts >= purity * total[code])]
    pure_content = content[(counts == best[code]) & (counts >= purity * total[code])]
    duplicates = []
    for c in torch.unique(pure_content).tolist():
        owners = pure_code[pure_content == c]
        if len(owners) > 1:
            keep = owners[total[owners].argmax()]
            duplicates += [int(o) for o in owners if o != keep]
    return torch.tensor(sorted(set(duplicates)), dtype=torch.long), torch.unique(pure_content)


def consistency_loss(z_n: torch.Tensor, pixels: torch.Tensor, patch: int) -> torch.Tensor:
    """Mean squared distance of each normalised encoder output to the mean output of every patch with the same pixels.

    The encoder sees the whole image (3x3 convolutions, a mid-block attention), so without this the same black
    4x4 patch gets a slightly different vector in every image and the codebook splits the background into dozens
    of codes: a token stream the language model finds hard to predict for no gain in fidelity.
    z_n: (B*h*w, D) rows ordered (b, y, x); pixels: (B, 3, h*patch, w*patch) -> () loss.
    """
    group = patch_groups(pixels, patch)  # (N,)
    sums = torch.zeros(int(group.max()) + 1, z_n.shape[1], dtype=z_n.dtype).index_add_(0, group, z_n)
    counts = torch.bincount(group).unsqueeze(1).to(z_n.dtype)  # (G, 1)
    return (z_n - (sums / counts)[group]).pow(2).sum(1).mean()


def reconstruction_loss(
    recon: torch.Tensor, target: torch.Tensor, l1_weight: float, mse_weight: float, fg_weight: float,
    edge_weight: float = 0.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """L1 + MSE on pixels in [-1, 1], (B, 3, H, W), weighted per pixel (the weights average to 1).

    Objects cover a small part of the canvas: object pixels (not black) weigh `fg_weight` times the background,
    so colour errors cost as much as the easy background; pixels within one pixel of an object's outline get
    `edge_weight` more, since the outline is all that tells a small circle from a square.
    """
    fg = (target > -1).any(dim=1, keepdim=True).to(recon.dtype)  # (B, 1, H, W)
    edge = F.max_pool2d(fg, 3, 1, 1) + F.max_pool2d(-fg, 3, 1, 1)  # (B, 1, H, W): dilation - erosion
    weight = 1 + (fg_weight - 1) * fg + edge_weight * edge
    weight = weight / weight.mean()
    diff = recon - target  # (B, 3, H, W)
    mse = diff.pow(2).mean()
    loss = l1_weight * (diff.abs() * weight).mean() + mse_weight * (diff.pow(2) * weight).mean()
    return loss, {"mse": float(mse.detach())}
