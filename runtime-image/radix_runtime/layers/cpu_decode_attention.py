"""Decode attention on CPU as one small C kernel reading the paged pool through the page table.

At decode shapes (a few heads of 16-128 dims, one query per sequence) torch's SDPA kernel spends
most of its time on per-head overhead, and the torch backend also keeps a dense copy of the decode
K/V up to date every step. This kernel does neither: per (sequence, KV head) it walks the
sequence's slots, scores every query head of the group against each K row (GQA: a K/V row is
loaded once per group; AVX2 dot products), softmaxes in float32 and accumulates the V rows.
float32 pools, head_dim a multiple of 8, x86-64 with AVX2/FMA.

It is compiled on first use with the system C compiler (`cc -O3 -march=native` with the
reassociation parts of -ffast-math, <1 s) into a cache directory and called through ctypes, so nothing is built at install time; without a
compiler `load()` returns None and the caller keeps the torch path. Opted into by the compiled
decode (--enable-torch-compile).
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

_SOURCE = r"""
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

/* e^x for 8 floats: Cephes' expf (x = n ln2 + r, |r| <= ln2 / 2, degree-5 polynomial, times
   2^n through the exponent bits), ~2 ulp. glibc's expf is scalar without -ffast-math, and one
   call per score per query head was most of the kernel's time. Inputs below -87.3 give ~1e-38,
   not 0 (the softmax's inputs are <= 0, so that is a weight of 0 in float32 sums). */
static inline __m256 exp256(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.3f));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 y = _mm256_set1_ps(1.9875691500e-4f);
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.3981999507e-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(8.3334519073e-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(4.1665795894e-2f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.6666665459e-1f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(5.0000001201e-1f));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.f)));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

/* out[0 : 8 dv] = inv * sum_j p[j] V_j[0 : 8 dv], V_j = vh + slots[j] * slot_stride; dv <= 8.
   Inlined with a constant dv, the accumulators are registers: each V row is loaded once, and
   two rows at a time when dv is small keep enough FMA chains in flight. */
static inline __attribute__((always_inline)) void pv_rows(
        const float *p, int64_t n, const float *vh, const int64_t *slots, int64_t slot_stride,
        float *out, __m256 inv, const int dv) {
    __m256 a[8], b[8];
    for (int d = 0; d < dv; d++) a[d] = b[d] = _mm256_setzero_ps();
    int64_t j = 0;
    if (dv <= 4) {
        for (; j + 2 <= n; j += 2) {
            if (j + 10 < n) {
                _mm_prefetch((const char *)(vh + slots[j + 8] * slot_stride), _MM_HINT_T0);
                _mm_prefetch((const char *)(vh + slots[j + 9] * slot_stride), _MM_HINT_T0);
            }
            const float *v0 = vh + slots[j] * slot_stride, *v1 = vh + slots[j + 1] * slot_stride;
            const __m256 w0 = _mm256_set1_ps(p[j]), w1 = _mm256_set1_ps(p[j + 1]);
            for (int d = 0; d < dv; d++) {
                a[d] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(v0 + 8 * d), a[d]);
                b[d] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(v1 + 8 * d), b[d]);
            }
        }
    }
    for (; j < n; j++) {
        if (j + 8 < n) _mm_prefetch((const char *)(vh + slots[j + 8] * slot_stride), _MM_HINT_T0);
        const float *v0 = vh + slots[j] * slot_stride;
        const __m256 w0 = _mm256_set1_ps(p[j]);
        for (int d = 0; d < dv; d++) a[d] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(v0 + 8 * d), a[d]);
    }
    for (int d = 0; d < dv; d++) _mm256_storeu_ps(out + 8 * d, _mm256_mul_ps(_mm256_add_ps(a[d], b[d]), inv));
}

static inline float hsum(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_shuffle_ps(lo, lo, 1));
    return _mm_cvtss_f32(lo);
}

/* q [B, H, D], the pool's K/V [slots, KVH, D] (row stride slot_stride), rows[b] sequence b's
   slots, of which the first lens[b] are its context -> out [B, H, D]. D % 8 == 0. scores: scratch
   of (H / KVH) x max lens floats. Per (sequence, KV head) each K row is loaded once for the
   group's query heads (GQA); scores, softmax, then the softmax-weighted sum of V rows. */
void decode_attention_f32(const float *q, const float *kbuf, const float *vbuf,
                          const int64_t *const *rows, const int64_t *lens, float *out,
                          float *scores, int64_t batch, int64_t heads, int64_t kv_heads,
                          int64_t dim, int64_t slot_stride, int64_t window, float scale) {
    const int64_t group = heads / kv_heads;
    float inv_sum[group];
    for (int64_t b = 0; b < batch; b++) {
        const int64_t len = lens[b];
        const int64_t lo = (window > 0 && len > window) ? len - window : 0;
        const int64_t n = len - lo;
        const int64_t *slots = rows[b] + lo;
        for (int64_t kh = 0; kh < kv_heads; kh++) {
            const float *qg = q + (b * heads + kh * group) * dim;
            float *og = out + (b * heads + kh * group) * dim;
            int64_t i = 0;
            for (; i + 4 <= n; i += 4) {  /* four positions: one shuffle tree for their sums */
                if (i + 16 < n) {  /* scattered slots defeat the hardware prefetcher */
                    _mm_prefetch((const char *)(kbuf + slots[i + 12] * slot_stride + kh * dim), _MM_HINT_T0);
                    _mm_prefetch((const char *)(kbuf + slots[i + 13] * slot_stride + kh * dim), _MM_HINT_T0);
                    _mm_prefetch((const char *)(kbuf + slots[i + 14] * slot_stride + kh * dim), _MM_HINT_T0);
                    _mm_prefetch((const char *)(kbuf + slots[i + 15] * slot_stride + kh * dim), _MM_HINT_T0);
                }
                const float *k0 = kbuf + slots[i] * slot_stride + kh * dim;
                const float *k1 = kbuf + slots[i + 1] * slot_stride + kh * dim;
                const float *k2 = kbuf + slots[i + 2] * slot_stride + kh * dim;
                const float *k3 = kbuf + slots[i + 3] * slot_stride + kh * dim;
                for (int64_t g = 0; g < group; g++) {
                    const float *qh = qg + g * dim;
                    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
                    for (int64_t d = 0; d < dim; d += 8) {
                        const __m256 qv = _mm256_loadu_ps(qh + d);
                        a0 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k0 + d), a0);
                        a1 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k1 + d), a1);
                        a2 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k2 + d), a2);
                        a3 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k3 + d), a3);
                    }
                    const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
                    const __m128 sum4 = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
                    _mm_storeu_ps(scores + g * n + i, _mm_mul_ps(sum4, _mm_set1_ps(scale)));
                }
            }
            for (; i < n; i++) {
                const float *k = kbuf + slots[i] * slot_stride + kh * dim;
                for (int64_t g = 0; g < group; g++) {
                    const float *qh = qg + g * dim;
                    __m256 acc = _mm256_setzero_ps();
                    for (int64_t d = 0; d < dim; d += 8)
                        acc = _mm256_fmadd_ps(_mm256_loadu_ps(qh + d), _mm256_loadu_ps(k + d), acc);
                    scores[g * n + i] = hsum(acc) * scale;
                }
            }
            for (int64_t g = 0; g < group; g++) {
                float *s = scores + g * n, m = -INFINITY, sum = 0.f;
                __m256 mx = _mm256_set1_ps(-INFINITY);
                int64_t i = 0;
                for (; i + 8 <= n; i += 8) mx = _mm256_max_ps(mx, _mm256_loadu_ps(s + i));
                for (; i < n; i++) m = s[i] > m ? s[i] : m;
                float lanes[8];
                _mm256_storeu_ps(lanes, mx);
                for (int64_t j = 0; j < 8; j++) m = lanes[j] > m ? lanes[j] : m;
                const __m256 mv = _mm256_set1_ps(m);
                __m256 acc = _mm256_setzero_ps();
                for (i = 0; i + 8 <= n; i += 8) {
                    const __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(s + i), mv));
                    _mm256_storeu_ps(s + i, e);
                    acc = _mm256_add_ps(acc, e);
                }
                sum = hsum(acc);
                if (i < n) {  /* the tail through a padded vector (its pad lanes: e^-inf ~ 0) */
                    float tail[8];
                    for (int64_t j = 0; j < 8; j++) tail[j] = i + j < n ? s[i + j] - m : -INFINITY;
                    _mm256_storeu_ps(tail, exp256(_mm256_loadu_ps(tail)));
                    for (int64_t j = 0; i + j < n; j++) { s[i + j] = tail[j]; sum += tail[j]; }
                }
                inv_sum[g] = 1.f / sum;  /* applied to the output, not to each weight */
            }
            const float *vh = vbuf + kh * dim;
            for (int64_t g = 0; g < group; g++) {  /* out[g] = sum_i p[g][i] V[i] */
                const float *p = scores + g * n;
                const __m256 inv = _mm256_set1_ps(inv_sum[g]);
                switch (dim) {  /* the dims a register tile holds: each V row loaded once */
                case 16: pv_rows(p, n, vh, slots, slot_stride, og + g * dim, inv, 2); break;
                case 32: pv_rows(p, n, vh, slots, slot_stride, og + g * dim, inv, 4); break;
                case 64: pv_rows(p, n, vh, slots, slot_stride, og + g * dim, inv, 8); break;
                default: {  /* 64 dims at a time, then the rest (not unrolled) */
                    int64_t d = 0;
                    for (; d + 64 <= dim; d += 64)
                        pv_rows(p, n, vh + d, slots, slot_stride, og + g * dim + d, inv, 8);
                    if (d < dim)
                        pv_rows(p, n, vh + d, slots, slot_stride, og + g * dim + d, inv, (int)(dim - d) / 8);
                }
                }
            }
        }
    }
}
/* The new token's K/V of each decode row (k, v [B, row], rows contiguous, k_stride / v_stride
   floats apart) into its last slot. */
void write_kv_f32(float *kbuf, float *vbuf, const int64_t *const *rows, const int64_t *lens,
                  const float *k, const float *v, int64_t batch, int64_t row, int64_t slot_stride,
                  int64_t k_stride, int64_t v_stride) {
    for (int64_t b = 0; b < batch; b++) {
        const int64_t slot = rows[b][lens[b] - 1];
        memcpy(kbuf + slot * slot_stride, k + b * k_stride, row * sizeof(float));
        memcpy(vbuf + slot * slot_stride, v + b * v_stride, row * sizeof(float));
    }
}
"""

# -ffast-math's parts that let the reductions vectorize, not -ffast-math (nor -funsafe-math-
# optimizations) itself: with either, gcc links crtfastmath.o into the library, whose load sets
# flush-to-zero and denormals-are-zero for the whole process (hypothesis then refuses to run).
_FLAGS = ["-O3", "-march=native", "-fno-math-errno", "-fno-trapping-math", "-fassociative-math",
          "-freciprocal-math", "-fno-signed-zeros", "-fPIC", "-shared"]
_lib: ctypes.CDLL | None | bool = False  # False: not tried yet


def _has_avx2_fma() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx2" in flags and " fma" in flags


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base, "radix_runtime", "kernels")


def load() -> ctypes.CDLL | None:
    """The compiled kernel (built once per source and flags, then cached), or None where it cannot
    run: no C compiler, not x86-64 with AVX2 and FMA, or the build fails."""
    global _lib
    if _lib is not False:
        return _lib
    _lib = None
    cc = shutil.which(os.environ.get("CC", "cc"))
    if cc is None or not _has_avx2_fma():
        return None
    key = hashlib.sha256((_SOURCE + " ".join(_FLAGS)).encode()).hexdigest()[:16]
    path = _cache_dir() / f"decode_attention_{key}.so"
    try:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
                src, so = Path(tmp, "k.c"), Path(tmp, "k.so")
                src.write_text(_SOURCE)
                r = subprocess.run([cc, *_FLAGS, str(src), "-o", str(so), "-lm"], capture_output=True)
                if r.returncode != 0:
                    return None
                os.replace(so, path)  # atomic: a concurrent process sees a whole file or none
        lib = ctypes.CDLL(str(path))
    except OSError:  # no writable cache directory, or the library does not load
        return None
    fn = lib.decode_attention_f32
    fn.restype = None
    fn.argtypes = [ctypes.c_void_p] * 7 + [ctypes.c_int64] * 6 + [ctypes.c_float]
    lib.write_kv_f32.restype = None
    lib.write_kv_f32.argtypes = [ctypes.c_void_p] * 6 + [ctypes.c_int64] * 5
    _lib = lib
    return lib


def table_rows(table: torch.Tensor) -> torch.Tensor:
    """The addresses of a [B, W] int64 slot table's rows (the table must outlive their use)."""
    if table.dtype != torch.int64 or table.stride(-1) != 1:
        raise ValueError("slot tables must be int64 with contiguous rows")
    return table.data_ptr() + torch.arange(table.shape[0], dtype=torch.int64) * (8 * table.stride(0))


def slot_rows(slots: list[torch.Tensor]) -> torch.Tensor | None:
    """The addresses of each sequence's slot list (int64, contiguous; the lists must outlive their
    use), or None when one is not such a list."""
    if not all(t.dtype == torch.int64 and t.is_contiguous() and t.device.type == "cpu" for t in slots):
        return None
    return torch.tensor([t.data_ptr() for t in slots], dtype=torch.int64)


def _check(q: torch.Tensor, k_buf: torch.Tensor, v_buf: torch.Tensor) -> None:
    if q.shape[-1] % 8 or q.dtype != torch.float32:
        raise ValueError(f"the C decode kernel takes float32 heads of a multiple of 8 dims, got {q.dtype} x {q.shape[-1]}")
    if not (k_buf.is_contiguous() and v_buf.is_contiguous()):
        raise ValueError("the pool's K/V buffers must be contiguous")


def decode_attention(lib: ctypes.CDLL, q: torch.Tensor, k_buf: torch.Tensor, v_buf: torch.Tensor,
                     rows: torch.Tensor, lens: torch.Tensor, scale: float,
                     window: int | None = None) -> torch.Tensor:
    """q [B, H, D] float32; k_buf, v_buf [slots, KVH, D] (a pool layer); rows [B] the addresses of
    each sequence's int64 slots (table_rows / slot_rows), of which the first lens[b] (int64, >= 1)
    are its context -> [B, H, D]."""
    _check(q, k_buf, v_buf)
    b, h, d = q.shape
    kvh = k_buf.shape[1]
    q, lens = q.contiguous(), lens.contiguous()
    out = torch.empty_like(q)
    scores = torch.empty((h // kvh) * max(int(lens.max()) if b else 1, 1), dtype=torch.float32)
    lib.decode_attention_f32(q.data_ptr(), k_buf.data_ptr(), v_buf.data_ptr(), rows.data_ptr(),
                             lens.data_ptr(), out.data_ptr(), scores.data_ptr(), b, h, kvh, d,
                             k_buf.stride(0), window or 0, scale)
    return out


def write_kv(lib: ctypes.CDLL, k_buf: torch.Tensor, v_buf: torch.Tensor, rows: torch.Tensor,
             lens: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    """Each decode row's new K/V (k, v [B, KVH, D]) into its slot rows[b][lens[b] - 1]."""
    _check(k, k_buf, v_buf)
    k, v, lens = _rows_dense(k), _rows_dense(v), lens.contiguous()
    lib.write_kv_f32(k_buf.data_ptr(), v_buf.data_ptr(), rows.data_ptr(), lens.data_ptr(),
                     k.data_ptr(), v.data_ptr(), k.shape[0], k.shape[1] * k.shape[2], k_buf.stride(0),
                     k.stride(0), v.stride(0))


def _rows_dense(t: torch.Tensor) -> torch.Tensor:
    """t [B, KVH, D] with each row's KVH x D contiguous (a q/k/v split's view already is)."""
    return t if t.stride(2) == 1 and t.stride(1) == t.shape[2] else t.contiguous()
