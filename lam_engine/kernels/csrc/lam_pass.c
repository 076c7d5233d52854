/* One Model B pass over Ξ in a single read: scores, online log-sum-exp, top-k and Ξᵀ e.
 *
 * For states v (B, d), already scaled by β·log₂e, and memories ξ (rows r0..r1 of an (N, d)
 * float32 / float16 / bfloat16 matrix), it yields the log-sum-exp partials of
 * lam_engine/math/merge.py in base 2:
 *
 *   m_b = max_μ a_bμ,  s_b = Σ_μ 2^(a_bμ − m_b),  o_b = Σ_μ 2^(a_bμ − m_b) ξ_μ,  top-k of a_b·
 *
 * with a_bμ = ξ_μ·v_b + bias_scale · bias_μ (bias_scale = 1/ln 2 takes log-priors in nats to
 * base 2; −inf hides a row). Rows are taken in blocks
 * of BLOCK: the block's scores are computed into a small buffer (L1/L2), the running
 * maximum and sums are rescaled when it grows (flash-decoding), and Ξᵀ e re-reads the block
 * from cache, so Ξ streams from memory once per pass. Half-precision rows are widened to
 * float32 in registers: exact on the stored values, every product and sum in float32.
 *
 * Threads: the rows are split into contiguous ranges, one per POSIX thread, whose partials
 * are merged exactly here (the same formulas as merge.py). Called through ctypes, which
 * releases the GIL. Needs AVX2, FMA and F16C (the caller checks the CPU's flags).
 */
#include <immintrin.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { DT_F32 = 0, DT_F16 = 1, DT_BF16 = 2 };
#define BLOCK 128
#define INLINE static inline __attribute__((always_inline))

INLINE __m256 load8(const void *base, int dt, int64_t idx) {
    if (dt == DT_F32) return _mm256_loadu_ps((const float *)base + idx);
    __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)base + idx));
    if (dt == DT_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

INLINE float load1(const void *base, int dt, int64_t idx) {
    if (dt == DT_F32) return ((const float *)base)[idx];
    uint16_t u = ((const uint16_t *)base)[idx];
    if (dt == DT_F16) return _cvtsh_ss(u);
    uint32_t w = (uint32_t)u << 16;
    float f;
    memcpy(&f, &w, 4);
    return f;
}

INLINE float hsum(__m256 x) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* 2^x for x ≤ 0 (Cephes' exp2f polynomial on [−½, ½], ≈ 2 ulp); exactly 0 below −126,
 * so a hidden row (−inf) contributes nothing. */
INLINE __m256 exp2_neg(__m256 x) {
    const __m256 lo = _mm256_set1_ps(-126.0f);
    __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    x = _mm256_max_ps(x, lo);
    __m256 i0 = _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 f = _mm256_sub_ps(x, i0);
    __m256 p = _mm256_set1_ps(1.535336188319500e-4f);
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.339887440266574e-3f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(9.618437357674640e-3f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(5.550332471162809e-2f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(2.402264791363012e-1f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(6.931472028550421e-1f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(i0), _mm256_set1_epi32(127)), 23);
    return _mm256_andnot_ps(under, _mm256_mul_ps(p, _mm256_castsi256_ps(e)));
}

INLINE float exp2_neg1(float x) { return x < -126.0f ? 0.0f : exp2f(x); }

/* Eight sums in one vector: lane q is the horizontal sum of a[q]. */
INLINE __m256 hsum8x8(const __m256 *a) {
    __m256 h0 = _mm256_hadd_ps(_mm256_hadd_ps(a[0], a[1]), _mm256_hadd_ps(a[2], a[3]));
    __m256 h1 = _mm256_hadd_ps(_mm256_hadd_ps(a[4], a[5]), _mm256_hadd_ps(a[6], a[7]));
    return _mm256_add_ps(_mm256_permute2f128_ps(h0, h1, 0x20), _mm256_permute2f128_ps(h0, h1, 0x31));
}

/* scores[q][i0] = ξ_r·v_q for q < Q (Q, U compile-time after inlining). One row at
 * a time, so Ξ is read as one sequential stream (a tile of rows 1.5 KB apart starts a cold
 * stream per row at every tile, measured 2× slower at B = 2); the Q states stay in L1. U
 * accumulators per state keep U·Q ≥ 8 FMA chains in flight. */
INLINE void dot_row_tile(const void *xi, int dt, int64_t d, int64_t r, const float *v, const int Q,
                         const int U, float *sc, int64_t i0) {
    __m256 acc[2][8];
    for (int u = 0; u < U; u++)
        for (int q = 0; q < Q; q++) acc[u][q] = _mm256_setzero_ps();
    const int64_t base = r * d;
    int64_t k = 0;
    for (; k + 8 * U <= d; k += 8 * U)
        for (int u = 0; u < U; u++) {
            __m256 x = load8(xi, dt, base + k + 8 * u);
            for (int q = 0; q < Q; q++)
                acc[u][q] = _mm256_fmadd_ps(x, _mm256_loadu_ps(v + q * d + k + 8 * u), acc[u][q]);
        }
    for (; k + 8 <= d; k += 8) {
        __m256 x = load8(xi, dt, base + k);
        for (int q = 0; q < Q; q++) acc[0][q] = _mm256_fmadd_ps(x, _mm256_loadu_ps(v + q * d + k), acc[0][q]);
    }
    if (U == 2)
        for (int q = 0; q < Q; q++) acc[0][q] = _mm256_add_ps(acc[0][q], acc[1][q]);
    float sums[8];
    if (Q == 8)
        _mm256_storeu_ps(sums, hsum8x8(acc[0]));
    else
        for (int q = 0; q < Q; q++) sums[q] = hsum(acc[0][q]);
    for (int q = 0; q < Q; q++) {
        float s = sums[q];
        for (int64_t t = k; t < d; t++) s += load1(xi, dt, base + t) * v[q * d + t];
        sc[q * BLOCK + i0] = s;
    }
}

/* All b ≤ 8 states against row r in one tile. */
INLINE void dot_row_multi(const void *xi, int dt, int64_t d, int64_t r, const float *v, int64_t b,
                          float *sc, int64_t i0) {
    switch (b) {
        case 8: dot_row_tile(xi, dt, d, r, v, 8, 1, sc, i0); break;
        case 7: dot_row_tile(xi, dt, d, r, v, 7, 1, sc, i0); break;
        case 6: dot_row_tile(xi, dt, d, r, v, 6, 1, sc, i0); break;
        case 5: dot_row_tile(xi, dt, d, r, v, 5, 1, sc, i0); break;
        case 4: dot_row_tile(xi, dt, d, r, v, 4, 2, sc, i0); break;
        case 3: dot_row_tile(xi, dt, d, r, v, 3, 2, sc, i0); break;
        case 2: dot_row_tile(xi, dt, d, r, v, 2, 2, sc, i0); break;
        case 1: dot_row_tile(xi, dt, d, r, v, 1, 2, sc, i0); break;
        default: break;
    }
}

/* Ask for `bytes` at p to be brought into L2 (a hint: no fault, no effect on results). */
INLINE void prefetch_l2(const char *p, int64_t bytes) {
    for (int64_t at = 0; at < bytes; at += 64) _mm_prefetch(p + at, _MM_HINT_T1);
}

/* The scores of rows [r, r + c) for b states: eight states at a time over the whole block.
 * The first eight stream the block from memory, the next read it from L2: a row against
 * all b states would want b·d floats of states in L1 (24 KB at b = 16, d = 384, with the
 * score buffer more than its 32 KB: measured 2.5× slower than b = 8).
 * After each row of the first eight, the same row of the next block (`next`, `next_c` rows
 * of `row_bytes`, NULL at the range's end) is asked into L2: the memory would otherwise idle
 * while the later groups, the softmax and Ξᵀ e compute from cache, and the hardware
 * prefetcher alone runs only a few lines ahead of the stream. Measured on the whole pass,
 * 10⁵ × 384 float32, 2 threads, both libraries in one process alternated (medians, steps 0
 * / with Ξᵀ e): b = 4 6.72 → 6.03 / 9.11 → 7.92 ms, b = 8 10.82 → 6.79 / 13.79 → 11.19,
 * b = 16 14.09 → 11.36 / 21.57 → 18.72 (faster in 10/10 pairs), b = 32 23.91 → 20.77 /
 * 38.57 → 36.09, b = 64 the same; bfloat16 b = 8-16 11-13 % faster. Not for b = 1 (the
 * stream is the whole cost there: 3-17 % slower), nor into L1 (slower). */
INLINE void dot_block(const void *xi, int dt, int64_t d, int64_t r, int64_t c, const float *v,
                      int64_t b, float *sc, const char *next, int64_t next_c, int64_t row_bytes) {
    for (int64_t q = 0; q < b; q += 8) {
        const int64_t qn = b - q < 8 ? b - q : 8;
        for (int64_t i = 0; i < c; i++) {
            dot_row_multi(xi, dt, d, r + i, v + q * d, qn, sc + q * BLOCK, i);
            if (q == 0 && i < next_c) prefetch_l2(next + i * row_bytes, row_bytes);
        }
    }
}

/* One state (B = 1): row by row, four accumulators over k, a purely sequential read. */
INLINE void dot_row_single(const void *xi, int dt, int64_t d, int64_t r, const float *v, float *sc,
                           int64_t i0) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t k = 0;
    const int64_t base = r * d;
    for (; k + 32 <= d; k += 32) {
        a0 = _mm256_fmadd_ps(load8(xi, dt, base + k), _mm256_loadu_ps(v + k), a0);
        a1 = _mm256_fmadd_ps(load8(xi, dt, base + k + 8), _mm256_loadu_ps(v + k + 8), a1);
        a2 = _mm256_fmadd_ps(load8(xi, dt, base + k + 16), _mm256_loadu_ps(v + k + 16), a2);
        a3 = _mm256_fmadd_ps(load8(xi, dt, base + k + 24), _mm256_loadu_ps(v + k + 24), a3);
    }
    for (; k + 8 <= d; k += 8) a0 = _mm256_fmadd_ps(load8(xi, dt, base + k), _mm256_loadu_ps(v + k), a0);
    float s = hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; k < d; k++) s += load1(xi, dt, base + k) * v[k];
    sc[i0] = s;
}


/* o_q[k..k+W) += Σ_i e_q[i] ξ_{r+i}[k..k+W) for Q queries: the Ξᵀ e of one block. */
INLINE void axpy_tile(const void *xi, int dt, int64_t d, int64_t r, int64_t c, const float *e,
                      int64_t q0, int Q, float *o, int64_t k) {
    __m256 acc[6][2];
    for (int q = 0; q < Q; q++) acc[q][0] = acc[q][1] = _mm256_setzero_ps();
    for (int64_t i = 0; i < c; i++) {
        __m256 x0 = load8(xi, dt, (r + i) * d + k);
        __m256 x1 = load8(xi, dt, (r + i) * d + k + 8);
        for (int q = 0; q < Q; q++) {
            __m256 w = _mm256_broadcast_ss(e + (q0 + q) * BLOCK + i);
            acc[q][0] = _mm256_fmadd_ps(x0, w, acc[q][0]);
            acc[q][1] = _mm256_fmadd_ps(x1, w, acc[q][1]);
        }
    }
    for (int q = 0; q < Q; q++) {
        float *oq = o + (q0 + q) * d + k;
        _mm256_storeu_ps(oq, _mm256_add_ps(_mm256_loadu_ps(oq), acc[q][0]));
        _mm256_storeu_ps(oq + 8, _mm256_add_ps(_mm256_loadu_ps(oq + 8), acc[q][1]));
    }
}

/* The same for one or two states over 32 columns: 4 or 8 FMA chains instead of 2 or 4. */
INLINE void axpy_tile_wide(const void *xi, int dt, int64_t d, int64_t r, int64_t c, const float *e,
                           const int Q, float *o, int64_t k) {
    __m256 acc[2][4];
    for (int q = 0; q < Q; q++) acc[q][0] = acc[q][1] = acc[q][2] = acc[q][3] = _mm256_setzero_ps();
    for (int64_t i = 0; i < c; i++) {
        const int64_t at = (r + i) * d + k;
        __m256 x0 = load8(xi, dt, at), x1 = load8(xi, dt, at + 8);
        __m256 x2 = load8(xi, dt, at + 16), x3 = load8(xi, dt, at + 24);
        for (int q = 0; q < Q; q++) {
            __m256 w = _mm256_broadcast_ss(e + q * BLOCK + i);
            acc[q][0] = _mm256_fmadd_ps(x0, w, acc[q][0]);
            acc[q][1] = _mm256_fmadd_ps(x1, w, acc[q][1]);
            acc[q][2] = _mm256_fmadd_ps(x2, w, acc[q][2]);
            acc[q][3] = _mm256_fmadd_ps(x3, w, acc[q][3]);
        }
    }
    for (int q = 0; q < Q; q++)
        for (int t = 0; t < 4; t++) {
            float *oq = o + q * d + k + 8 * t;
            _mm256_storeu_ps(oq, _mm256_add_ps(_mm256_loadu_ps(oq), acc[q][t]));
        }
}

/* Ξᵀ e of one block for b states: ⌈b/6⌉ tiles of near-equal size (8 = 4 + 4, not 6 + 2,
 * whose 2-state tile has 4 FMA chains), one or two states over wider columns. */
INLINE void axpy_block(const void *xi, int dt, int64_t d, int64_t r, int64_t c, const float *e,
                       int64_t b, float *o) {
    int64_t k = 0;
    if (b <= 2)
        for (; k + 32 <= d; k += 32) {
            if (b == 2)
                axpy_tile_wide(xi, dt, d, r, c, e, 2, o, k);
            else
                axpy_tile_wide(xi, dt, d, r, c, e, 1, o, k);
        }
    const int64_t tiles = (b + 5) / 6;
    for (; k + 16 <= d; k += 16) {
        int64_t q = 0;
        for (int64_t t = 0; t < tiles; t++) {
            const int64_t size = b / tiles + (t < b % tiles);
            switch (size) {
                case 6: axpy_tile(xi, dt, d, r, c, e, q, 6, o, k); break;
                case 5: axpy_tile(xi, dt, d, r, c, e, q, 5, o, k); break;
                case 4: axpy_tile(xi, dt, d, r, c, e, q, 4, o, k); break;
                case 3: axpy_tile(xi, dt, d, r, c, e, q, 3, o, k); break;
                case 2: axpy_tile(xi, dt, d, r, c, e, q, 2, o, k); break;
                default: axpy_tile(xi, dt, d, r, c, e, q, 1, o, k); break;
            }
            q += size;
        }
    }
    for (; k < d; k++)  // a dimension that is not a multiple of 16: the rest, scalar
        for (int64_t q = 0; q < b; q++) {
            float s = 0.0f;
            for (int64_t i = 0; i < c; i++) s += e[q * BLOCK + i] * load1(xi, dt, (r + i) * d + k);
            o[q * d + k] += s;
        }
}

/* Insert (val, row) into a descending list of at most k; ties keep the earlier entry first. */
static void topk_insert(float *tl, int64_t *tr, int *filled, int k, float val, int64_t row) {
    int p = *filled < k ? (*filled)++ : k - 1;
    while (p > 0 && tl[p - 1] < val) {
        tl[p] = tl[p - 1];
        tr[p] = tr[p - 1];
        p--;
    }
    tl[p] = val;
    tr[p] = row;
}

typedef struct {
    const void *xi;
    int dt;
    int64_t d, b, r0, r1;
    const float *v, *bias;
    float bias_scale;
    int k, need_out;
    /* outputs of this range */
    float *m, *s, *o, *tl;
    int64_t *tr;
    int *filled;
    int failed;
} Range;

INLINE void run_range_dt(Range *a, const int dt) {
    const int64_t d = a->d, b = a->b, k = a->k;
    float *sc = (float *)aligned_alloc(64, sizeof(float) * BLOCK * (size_t)(b > 0 ? b : 1));
    // Half rows read by more than one group of eight states: the block is widened once
    // into a float32 copy (L2-sized) that every group reads, instead of converting per
    // group. Up to eight states read each row once (the Ξᵀ e tiles at most twice), so the
    // copy would be a sweep for nothing: bfloat16 B = 4 steps 0 2.9 ms without, 6.1–8.1 with.
    const int widen = dt != DT_F32 && b > 8;
    float *wide = widen ? (float *)aligned_alloc(64, sizeof(float) * BLOCK * (size_t)d + 64) : NULL;
    if (!sc || (widen && !wide)) {
        free(sc);
        free(wide);
        a->failed = 1;
        return;
    }
    for (int64_t q = 0; q < b; q++) {
        a->m[q] = -INFINITY;
        a->s[q] = 0.0f;
        a->filled[q] = 0;
        for (int64_t j = 0; j < k; j++) {
            a->tl[q * k + j] = -INFINITY;
            a->tr[q * k + j] = -1;
        }
    }
    if (a->need_out) memset(a->o, 0, sizeof(float) * (size_t)(b * d));
    for (int64_t r = a->r0; r < a->r1; r += BLOCK) {
        const int64_t c = a->r1 - r < BLOCK ? a->r1 - r : BLOCK;
        const void *rows = a->xi;
        int64_t r_in = r;  // the block's first row in `rows`
        if (widen) {
            for (int64_t t = 0; t + 8 <= c * d; t += 8) _mm256_storeu_ps(wide + t, load8(a->xi, dt, r * d + t));
            for (int64_t t = (c * d) / 8 * 8; t < c * d; t++) wide[t] = load1(a->xi, dt, r * d + t);
            rows = wide;
            r_in = 0;
        }
        // The next block of the range, prefetched while this one computes (dot_block).
        const int64_t row_bytes = d * (dt == DT_F32 ? 4 : 2);
        const int64_t next_c = a->r1 - r - c < BLOCK ? a->r1 - r - c : BLOCK;
        const char *next = (const char *)a->xi + (r + c) * row_bytes;
        if (b == 1 && !widen)
            for (int64_t i = 0; i < c; i++) dot_row_single(rows, dt, d, r_in + i, a->v, sc, i);
        else if (widen)
            dot_block(rows, DT_F32, d, r_in, c, a->v, b, sc, next, next_c, row_bytes);
        else
            dot_block(rows, dt, d, r_in, c, a->v, b, sc, next, next_c, row_bytes);
        int any = 0;
        for (int64_t q = 0; q < b; q++) {
            float *l = sc + q * BLOCK;
            if (a->bias)
                for (int64_t j = 0; j < c; j++) l[j] += a->bias[r + j] * a->bias_scale;
            __m256 vm = _mm256_set1_ps(-INFINITY);
            int64_t j = 0;
            for (; j + 8 <= c; j += 8) vm = _mm256_max_ps(vm, _mm256_loadu_ps(l + j));
            __m128 h = _mm_max_ps(_mm256_castps256_ps128(vm), _mm256_extractf128_ps(vm, 1));
            h = _mm_max_ps(h, _mm_movehl_ps(h, h));
            h = _mm_max_ss(h, _mm_movehdup_ps(h));
            float bm = _mm_cvtss_f32(h);
            for (; j < c; j++) bm = l[j] > bm ? l[j] : bm;
            if (bm == -INFINITY) {  // every row of the block hidden: no weight, no match
                memset(l, 0, sizeof(float) * BLOCK);
                continue;
            }
            any = 1;
            // Once k rows are held, a block whose maximum does not beat the k-th is skipped.
            if (k > 0 && (a->filled[q] < k || bm > a->tl[q * k + k - 1])) {
                float *tl = a->tl + q * k;
                int64_t *tr = a->tr + q * k;
                for (j = 0; j < c; j++) {
                    float thr = a->filled[q] < k ? -INFINITY : tl[k - 1];
                    if (l[j] > thr) topk_insert(tl, tr, &a->filled[q], (int)k, l[j], r + j);
                }
            }
            if (bm > a->m[q]) {
                float f = a->m[q] == -INFINITY ? 0.0f : exp2_neg1(a->m[q] - bm);
                a->s[q] *= f;
                if (a->need_out)
                    for (int64_t t = 0; t < d; t++) a->o[q * d + t] *= f;
                a->m[q] = bm;
            }
            const __m256 mq = _mm256_set1_ps(a->m[q]);
            __m256 sum = _mm256_setzero_ps();
            for (j = 0; j + 8 <= c; j += 8) {
                __m256 e = exp2_neg(_mm256_sub_ps(_mm256_loadu_ps(l + j), mq));
                _mm256_storeu_ps(l + j, e);
                sum = _mm256_add_ps(sum, e);
            }
            float s = hsum(sum);
            for (; j < c; j++) {
                l[j] = exp2_neg1(l[j] - a->m[q]);
                s += l[j];
            }
            for (; j < BLOCK; j++) l[j] = 0.0f;
            a->s[q] += s;
        }
        if (a->need_out && any) {
            if (widen)
                axpy_block(rows, DT_F32, d, r_in, c, sc, b, a->o);
            else
                axpy_block(rows, dt, d, r_in, c, sc, b, a->o);
        }
    }
    free(sc);
    free(wide);
}

static void run_range(Range *a) {
    switch (a->dt) {
        case DT_F16: run_range_dt(a, DT_F16); break;
        case DT_BF16: run_range_dt(a, DT_BF16); break;
        default: run_range_dt(a, DT_F32); break;
    }
}

static void *range_thread(void *p) {
    run_range((Range *)p);
    return NULL;
}

/* Merge the ranges' partials into the first one (merge.py's formulas, in base 2). */
static void merge_into(Range *rs, int n, int64_t b, int64_t d, int k, int need_out) {
    Range *dst = &rs[0];
    for (int64_t q = 0; q < b; q++) {
        float big = -INFINITY;
        for (int t = 0; t < n; t++) big = rs[t].m[q] > big ? rs[t].m[q] : big;
        float s = 0.0f;
        for (int t = 0; t < n; t++) {
            float w = rs[t].m[q] == -INFINITY ? 0.0f : exp2_neg1(rs[t].m[q] - big);
            s += w * rs[t].s[q];
            if (need_out && t > 0)
                for (int64_t j = 0; j < d; j++) dst->o[q * d + j] += w * rs[t].o[q * d + j];
            else if (need_out)
                for (int64_t j = 0; j < d; j++) dst->o[q * d + j] *= w;
        }
        dst->m[q] = big;
        dst->s[q] = s;
        for (int t = 1; t < n; t++)
            for (int j = 0; j < rs[t].filled[q]; j++) {
                float val = rs[t].tl[q * k + j];
                float thr = dst->filled[q] < k ? -INFINITY : dst->tl[q * k + k - 1];
                if (val > thr) topk_insert(dst->tl + q * k, dst->tr + q * k, &dst->filled[q], k, val, rs[t].tr[q * k + j]);
            }
    }
}

/* The pass over rows [0, n). Returns 0, or −1 if memory ran out. Outputs: m, s (b),
 * o (b, d) when need_out, top_l (b, k) descending and top_r (b, k) (−1: none). */
int lam_pass(const void *xi, int dt, int64_t n, int64_t d, const float *v, int64_t b,
             const float *bias, float bias_scale, int k, int need_out, int threads, float *m, float *s, float *o,
             float *top_l, int64_t *top_r) {
    if (threads < 1) threads = 1;
    int64_t blocks = (n + BLOCK - 1) / BLOCK;
    if (threads > blocks) threads = (int)(blocks > 0 ? blocks : 1);
    Range *rs = (Range *)calloc((size_t)threads, sizeof(Range));
    int *filled = (int *)calloc((size_t)(threads * b + 1), sizeof(int));
    if (!rs || !filled) {
        free(rs);
        free(filled);
        return -1;
    }
    int failed = 0;
    for (int t = 0; t < threads; t++) {
        Range *a = &rs[t];
        a->xi = xi;
        a->dt = dt;
        a->d = d;
        a->b = b;
        a->v = v;
        a->bias = bias;
        a->bias_scale = bias_scale;
        a->k = k;
        a->need_out = need_out;
        a->r0 = blocks * t / threads * BLOCK;
        a->r1 = t == threads - 1 ? n : blocks * (t + 1) / threads * BLOCK;
        a->filled = filled + t * b;
        if (t == 0) {
            a->m = m;
            a->s = s;
            a->o = o;
            a->tl = top_l;
            a->tr = top_r;
        } else {
            a->m = (float *)malloc(sizeof(float) * (size_t)(2 * b + (need_out ? b * d : 0) + b * k + 1));
            a->tr = (int64_t *)malloc(sizeof(int64_t) * (size_t)(b * k + 1));
            if (!a->m || !a->tr) {
                failed = 1;
                break;
            }
            a->s = a->m + b;
            a->tl = a->s + b;
            a->o = a->tl + b * k;
        }
    }
    if (!failed) {
        pthread_t *tid = (pthread_t *)calloc((size_t)threads, sizeof(pthread_t));
        int started = 1;
        if (tid)
            for (; started < threads; started++)
                if (pthread_create(&tid[started], NULL, range_thread, &rs[started]) != 0) break;
        for (int t = started; t < threads; t++) run_range(&rs[t]);  // threads refused: run here
        run_range(&rs[0]);
        for (int t = 1; t < started; t++) pthread_join(tid[t], NULL);
        free(tid);
        for (int t = 0; t < threads; t++) failed |= rs[t].failed;
        if (!failed) merge_into(rs, threads, b, d, k, need_out);
    }
    for (int t = 1; t < threads; t++) {
        free(rs[t].m);
        free(rs[t].tr);
    }
    free(rs);
    free(filled);
    return failed ? -1 : 0;
}
