/* A certified flat search over int8 codes: the exact top-k inner products ξ·q of a whole
 * bank, reading one byte per coordinate in its pass instead of four.
 *
 * Each memory ξ_i is kept as codes c_i ∈ [−127, 127]^dp (zero-padded to dp, a multiple of
 * 4) with a scale a_i, ξ̃_i = a_i c_i, beside its float32 row (index/sq8.py). A query q is
 * quantized the same way (q̃ = a_q c_q; with VNNI in two levels, see quantize_query), so
 * s̃_i = a_i a_q (c_i · c_q) is an exact integer dot product times two scales, and by
 * Cauchy–Schwarz
 *     |ξ_i·q − s̃_i| ≤ ‖ξ_i − ξ̃_i‖ ‖q‖ + ‖ξ̃_i‖ ‖q − q̃‖,
 * where `err` (≥ ‖ξ_i − ξ̃_i‖, plus (d + 8)·2⁻²² ‖ξ_i‖ for the float32 rounding of the
 * exact score and of s̃) and `nrm` (≥ ‖ξ̃_i‖) are rounded up when they are built. So
 * u_i = s̃_i + err_i ‖q‖ + nrm_i ‖q − q̃‖ bounds the exact float32 score from above.
 *
 * Per query: one pass over the codes keeps the m rows of largest u; then the candidates
 * are scored exactly (float32, the stored rows) in decreasing u, until the next one's u is
 * below the k-th exact score found: every row not scored yet, a candidate or not, has
 * s ≤ u < that score, so the k returned are the true top-k. If the candidates run out
 * first, the k-th exact score must still be ≥ the m-th u (no row outside scores more);
 * otherwise the query is searched again with 4 m candidates (at the end every row: the
 * plain exact search).
 *
 * The m best u are kept as a heap would keep them but without one (a heap's sift costs
 * ≈ 150 ns here, mostly mispredicted branches, and m ln(N/m) of them made the pass 1.5–2×
 * slower at m = 1024): each thread appends the rows whose u beats its threshold to a
 * buffer of BUF·m; when it fills, a quickselect keeps its m best and their least becomes the
 * threshold. Every row dropped, then or never appended, has u ≤ its thread's threshold,
 * and each thread's buffer holds m rows at least that high, so the m-th u of all buffers
 * together bounds every row left out.
 *
 * Layout: blocks of 16 rows, four dimensions of each row per 64 bytes, so that one vector
 * instruction advances 16 rows by four dimensions and the 16 sums end in 16 lanes, where
 * their bounds are formed and compared at once (a horizontal sum per row and query, and
 * a scalar bound, cost more than the products did in a row-major layout):
 *     codes[(blk · dp/4 + j) · 64 + 4 lane + t] = c[16 blk + lane][4 j + t].
 * Rows past n in the last block are zero and never kept.
 *
 * The integer products: with AVX-512 VNNI, vpdpbusd multiplies unsigned by signed bytes and
 * sums each four into an int32 lane; the codes become unsigned by c ^ 0x80 = c + 128, and
 * 128 Σ_j c_q,j comes off each sum. With AVX2, _mm256_sign_epi8 moves the query's signs
 * onto the codes and _mm256_maddubs_epi16 multiplies |c_q| (unsigned) by them, pairs summed
 * into int16 (|pair| ≤ 2·127² < 2¹⁵: no saturation), _mm256_madd_epi16 widening to int32.
 * |c_i · c_q| ≤ d·127² < 2³¹ for every d ≤ 65536.
 */
#include <immintrin.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lam_heap.h"

#define ROWS 16          // rows per block of codes
#define GROUP_VNNI 8     // queries a block is scored against while it is in registers
#define GROUP_AVX2 4
#define BUF 2  // a thread's buffer per query, in m: a fuller one is cut back to m
#define PREFETCH_ROWS 4  // candidates ahead whose float32 rows are prefetched (phase 2)

typedef struct {
    float u;
    int64_t r;
} Cand;

/* Reorder c[0..n) so that c[0..m) are m entries of largest u (0 < m < n). */
static void select_top(Cand *c, int64_t n, int64_t m) {
    int64_t lo = 0, hi = n - 1;
    while (lo < hi) {
        const float pivot = c[lo + (hi - lo) / 2].u;
        int64_t i = lo, j = hi;
        while (i <= j) {  // Hoare partition, descending
            while (c[i].u > pivot) i++;
            while (c[j].u < pivot) j--;
            if (i <= j) {
                const Cand t = c[i];
                c[i++] = c[j];
                c[j--] = t;
            }
        }
        if (m - 1 <= j)
            hi = j;
        else if (m - 1 >= i)
            lo = i;
        else
            break;
    }
}

INLINE int cand_before(Cand x, Cand y) { return x.u > y.u || (x.u == y.u && x.r < y.r); }

/* c[0..n) by decreasing u, ties by increasing row: a total order, so the candidates are
 * scored (and equal scores kept) in an order of the data's, not of the sort's. Inlined
 * comparisons: qsort's calls through a pointer took ≈ 70 µs for m = 1024, this ≈ 45. */
static void sort_cands(Cand *c, int64_t n) {
    while (n > 24) {
        const Cand p = c[n / 2];
        int64_t i = 0, j = n - 1;
        while (i <= j) {  // Hoare partition
            while (cand_before(c[i], p)) i++;
            while (cand_before(p, c[j])) j--;
            if (i <= j) {
                const Cand t = c[i];
                c[i++] = c[j];
                c[j--] = t;
            }
        }
        if (j + 1 < n - i) {  // recurse into the smaller side: O(log n) deep
            sort_cands(c, j + 1);
            c += i;
            n -= i;
        } else {
            sort_cands(c + i, n - i);
            n = j + 1;
        }
    }
    for (int64_t i = 1; i < n; i++) {  // insertion sort of the short runs
        const Cand x = c[i];
        int64_t j = i;
        for (; j > 0 && cand_before(x, c[j - 1]); j--) c[j] = c[j - 1];
        c[j] = x;
    }
}

typedef struct {
    int64_t b, d, dp, n, m, k;
    const float *q, *scale, *err, *nrm, *xb;
    const int8_t *codes;
    const int32_t *qc4;        // (b, dp/4) the queries' codes, four bytes an int32
    const int32_t *qa4;        // (b, dp/4) AVX2: their absolute values; VNNI: the residual's
    const int32_t *qsum;       // VNNI: (2, b) 128 Σ_j of the codes, of the residual's codes
    const float *qs, *qn, *qe;  // (b,) a_q, ‖q‖ and ‖q − q̃‖, rounded up
    const float *qs2;          // VNNI: (b,) the residual's scale
    const int64_t *todo;       // (b,) the queries this round searches, by index into q
    Cand *buf;                 // per thread: b buffers of BUF·m (phase 1)
    int64_t *cnt;              // per thread: b buffer fills
    float *tau;                // per thread: b thresholds
    Cand *all_c;               // per thread: a query's merged buffers (phase 2)
    float *es;                 // per thread: k exact scores (phase 2)
    int64_t *er;
    int64_t blk0, blk1;        // this thread's blocks (phase 1)
    int64_t q0, qstep;         // this thread's queries (phase 2)
    int threads, vnni;
    void *all;                 // the array of every thread's Scan (phase 2 merges them)
    float *out_s;
    int64_t *out_row, *scored;
    uint8_t *failed;           // (b,) 1: not certified with m candidates
} Scan;

/* Append the lanes of `hit` (rows r0 + lane, bounds u[lane]) to query qi's buffer. */
static void keep_rows(Scan *a, int64_t qi, uint32_t hit, const float *u, int64_t r0) {
    Cand *c = a->buf + qi * BUF * a->m;
    while (hit) {
        const int lane = __builtin_ctz(hit);
        hit &= hit - 1;
        if (!(u[lane] > a->tau[qi])) continue;  // the threshold rose within this block
        c[a->cnt[qi]++] = (Cand){u[lane], r0 + lane};
        if (a->cnt[qi] == BUF * a->m) {
            select_top(c, BUF * a->m, a->m);
            float least = c[0].u;
            for (int64_t j = 1; j < a->m; j++) least = c[j].u < least ? c[j].u : least;
            a->tau[qi] = least;
            a->cnt[qi] = a->m;
        }
    }
}

/* The rows of the block starting at r0 that exist (r0 + lane < n). */
INLINE uint32_t live_lanes(int64_t r0, int64_t n) {
    return r0 + ROWS <= n ? 0xffffu : (uint32_t)((1u << (n - r0)) - 1u);
}

#define VNNI __attribute__((target("avx512f,avx512bw,avx512vnni")))

/* u of 16 rows for query qi from their integer sums; keep those above the threshold. */
VNNI static inline __attribute__((always_inline)) void bounds16(Scan *a, int64_t qi, __m512i dot,
                                                                 __m512i dot2, int64_t r0,
                                                                 uint32_t live) {
    const __m512 sc = _mm512_loadu_ps(a->scale + r0), er = _mm512_loadu_ps(a->err + r0);
    const __m512 nr = _mm512_loadu_ps(a->nrm + r0);
    const __m512 cq = _mm512_add_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(dot), _mm512_set1_ps(a->qs[qi])),
                                    _mm512_mul_ps(_mm512_cvtepi32_ps(dot2), _mm512_set1_ps(a->qs2[qi])));
    const __m512 st = _mm512_mul_ps(cq, sc);
    const __m512 e = _mm512_add_ps(_mm512_mul_ps(er, _mm512_set1_ps(a->qn[qi])),
                                   _mm512_mul_ps(nr, _mm512_set1_ps(a->qe[qi])));
    const __m512 mag = _mm512_add_ps(_mm512_abs_ps(st), e);
    const __m512 u = _mm512_add_ps(_mm512_add_ps(st, e), _mm512_mul_ps(mag, _mm512_set1_ps(0x1p-20f)));
    const uint32_t hit = _mm512_cmp_ps_mask(u, _mm512_set1_ps(a->tau[qi]), _CMP_GT_OQ) & live;
    if (hit) {
        float ub[ROWS];
        _mm512_storeu_ps(ub, u);
        keep_rows(a, qi, hit, ub, r0);
    }
}

/* Blocks [blk0, blk1) against queries qi0 … qi0 + g − 1 (g a constant at each call). */
VNNI static inline __attribute__((always_inline)) void scan_vnni(Scan *a, int64_t qi0, int g) {
    const int64_t nd4 = a->dp / 4;
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    for (int64_t blk = a->blk0; blk < a->blk1; blk++) {
        const int8_t *cb = a->codes + blk * nd4 * 64;
        __m512i acc[GROUP_VNNI], acc2[GROUP_VNNI];
        for (int t = 0; t < g; t++) acc[t] = acc2[t] = _mm512_setzero_si512();
        for (int64_t j = 0; j < nd4; j++) {
            const __m512i cv = _mm512_xor_si512(_mm512_loadu_si512((const void *)(cb + 64 * j)), flip);
            for (int t = 0; t < g; t++) {
                const int64_t w = (qi0 + t) * nd4 + j;
                acc[t] = _mm512_dpbusd_epi32(acc[t], cv, _mm512_set1_epi32(a->qc4[w]));
                acc2[t] = _mm512_dpbusd_epi32(acc2[t], cv, _mm512_set1_epi32(a->qa4[w]));
            }
        }
        const int64_t r0 = blk * ROWS;
        const uint32_t live = live_lanes(r0, a->n);
        for (int t = 0; t < g; t++) {
            const int64_t qi = qi0 + t;
            bounds16(a, qi, _mm512_sub_epi32(acc[t], _mm512_set1_epi32(a->qsum[qi])),
                     _mm512_sub_epi32(acc2[t], _mm512_set1_epi32(a->qsum[a->b + qi])), r0, live);
        }
    }
}

VNNI static void scan_rows_vnni(Scan *a) {
    int64_t qi = 0;
    for (; a->b - qi >= GROUP_VNNI; qi += GROUP_VNNI) scan_vnni(a, qi, GROUP_VNNI);
    if (a->b - qi >= 4) {
        scan_vnni(a, qi, 4);
        qi += 4;
    }
    if (a->b - qi >= 2) {
        scan_vnni(a, qi, 2);
        qi += 2;
    }
    if (a->b - qi >= 1) scan_vnni(a, qi, 1);
}

/* bounds16 for AVX2: rows r0 … r0 + 7 (lo) and r0 + 8 … r0 + 15 (hi). */
INLINE void bounds8(Scan *a, int64_t qi, __m256i dot, int64_t r0, uint32_t live, float *ub) {
    const __m256 sc = _mm256_loadu_ps(a->scale + r0), er = _mm256_loadu_ps(a->err + r0);
    const __m256 nr = _mm256_loadu_ps(a->nrm + r0);
    const __m256 st = _mm256_mul_ps(_mm256_cvtepi32_ps(dot), _mm256_mul_ps(sc, _mm256_set1_ps(a->qs[qi])));
    const __m256 e = _mm256_add_ps(_mm256_mul_ps(er, _mm256_set1_ps(a->qn[qi])),
                                   _mm256_mul_ps(nr, _mm256_set1_ps(a->qe[qi])));
    const __m256 abs_st = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), st);
    const __m256 mag = _mm256_add_ps(abs_st, e);
    const __m256 u = _mm256_add_ps(_mm256_add_ps(st, e), _mm256_mul_ps(mag, _mm256_set1_ps(0x1p-20f)));
    const uint32_t hit = (uint32_t)_mm256_movemask_ps(_mm256_cmp_ps(u, _mm256_set1_ps(a->tau[qi]), _CMP_GT_OQ)) & live;
    if (hit) {
        _mm256_storeu_ps(ub, u);
        keep_rows(a, qi, hit, ub, r0);
    }
}

INLINE __m256i madd_i8(__m256i c, __m256i qs, __m256i qa, __m256i ones) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(qa, _mm256_sign_epi8(c, qs)), ones);
}

INLINE void scan_avx2(Scan *a, int64_t qi0, int g) {
    const int64_t nd4 = a->dp / 4;
    const __m256i ones = _mm256_set1_epi16(1);
    for (int64_t blk = a->blk0; blk < a->blk1; blk++) {
        const int8_t *cb = a->codes + blk * nd4 * 64;
        __m256i lo[GROUP_AVX2], hi[GROUP_AVX2];
        for (int t = 0; t < g; t++) lo[t] = hi[t] = _mm256_setzero_si256();
        for (int64_t j = 0; j < nd4; j++) {
            const __m256i c0 = _mm256_loadu_si256((const __m256i *)(cb + 64 * j));
            const __m256i c1 = _mm256_loadu_si256((const __m256i *)(cb + 64 * j + 32));
            for (int t = 0; t < g; t++) {
                const __m256i qs = _mm256_set1_epi32(a->qc4[(qi0 + t) * nd4 + j]);
                const __m256i qa = _mm256_set1_epi32(a->qa4[(qi0 + t) * nd4 + j]);
                lo[t] = _mm256_add_epi32(lo[t], madd_i8(c0, qs, qa, ones));
                hi[t] = _mm256_add_epi32(hi[t], madd_i8(c1, qs, qa, ones));
            }
        }
        const int64_t r0 = blk * ROWS;
        const uint32_t live = live_lanes(r0, a->n);
        float ub[8];
        for (int t = 0; t < g; t++) {
            bounds8(a, qi0 + t, lo[t], r0, live & 0xffu, ub);
            bounds8(a, qi0 + t, hi[t], r0 + 8, live >> 8, ub);
        }
    }
}

/* Phase 1: this thread's blocks against every query of the round, a group at a time. */
static void *scan_rows(void *p) {
    Scan *a = (Scan *)p;
    for (int64_t qi = 0; qi < a->b; qi++) {
        a->cnt[qi] = 0;
        a->tau[qi] = -INFINITY;
    }
    if (a->vnni) {
        scan_rows_vnni(a);
        return NULL;
    }
    int64_t qi = 0;
    for (; a->b - qi >= GROUP_AVX2; qi += GROUP_AVX2) scan_avx2(a, qi, GROUP_AVX2);
    if (a->b - qi >= 2) {
        scan_avx2(a, qi, 2);
        qi += 2;
    }
    if (a->b - qi >= 1) scan_avx2(a, qi, 1);
    return NULL;
}

/* Phase 2, one query: merge the threads' buffers, score the candidates exactly in
 * decreasing bound until the bound certifies the top-k, write them out. */
static void certify(Scan *a, int64_t qi) {
    Scan *all = (Scan *)a->all;
    const int64_t m = a->m, kk = a->k < a->n ? a->k : a->n;
    Cand *c = a->all_c;
    int64_t cnt = 0;
    for (int t = 0; t < a->threads; t++) {
        memcpy(c + cnt, all[t].buf + qi * BUF * m, sizeof(Cand) * (size_t)all[t].cnt[qi]);
        cnt += all[t].cnt[qi];
    }
    if (cnt > m) {
        select_top(c, cnt, m);
        cnt = m;
    }
    // Left out: rows a thread never kept or dropped (u ≤ its threshold ≤ the m-th u here,
    // see the header) and rows cut just now (u ≤ the m-th u). None when every row is here.
    float outside = -INFINITY;
    if (cnt < a->n && cnt > 0) {
        outside = c[0].u;
        for (int64_t j = 1; j < cnt; j++) outside = c[j].u < outside ? c[j].u : outside;
    }
    sort_cands(c, cnt);
    const int64_t orig = a->todo[qi];
    const float *qv = a->q + orig * a->d;
    Heap e = {a->es, a->er, 0, kk};
    int certified = 0;
    int64_t j = 0;
    for (; j < cnt; j++) {
        if (e.n == kk && c[j].u < heap_floor(&e)) {
            certified = 1;
            break;
        }
        if (j + PREFETCH_ROWS < cnt) {  // the rows are scattered: ask for them early
            const char *ahead = (const char *)(a->xb + c[j + PREFETCH_ROWS].r * a->d);
            for (int64_t off = 0; off < a->d * 4; off += 64) _mm_prefetch(ahead + off, _MM_HINT_T0);
        }
        const float s = dot1(a->xb + c[j].r * a->d, qv, a->d);
        if (s > heap_floor(&e)) heap_push(&e, s, c[j].r);
    }
    if (!certified) certified = e.n == kk && heap_floor(&e) >= outside;
    a->scored[orig] += j;
    a->failed[qi] = (uint8_t)!certified;
    if (!certified) return;
    float *os = a->out_s + orig * a->k;
    int64_t *orow = a->out_row + orig * a->k;
    heap_drain(&e, os, orow);
    for (int64_t t = kk; t < a->k; t++) {
        os[t] = -INFINITY;
        orow[t] = -1;
    }
}

static void *certify_queries(void *p) {
    Scan *a = (Scan *)p;
    for (int64_t qi = a->q0; qi < a->b; qi += a->qstep) certify(a, qi);
    return NULL;
}

/* Codes of x (d values, dp bytes written: zero past d) at scale max|x| / 127; returns the
 * scale and Σ codes. */
static float quantize(const double *x, int64_t d, int64_t dp, int8_t *c, int32_t *sum) {
    double amax = 0.0;
    for (int64_t j = 0; j < d; j++) amax = fmax(amax, fabs(x[j]));
    const float a = (float)(amax / 127.0);
    int32_t s = 0;
    for (int64_t j = 0; j < dp; j++) {
        int v = 0;
        if (j < d && a > 0.0f) {
            v = (int)lrint(x[j] / a);
            v = v > 127 ? 127 : (v < -127 ? -127 : v);
        }
        c[j] = (int8_t)v;
        s += v;
    }
    *sum = s;
    return a;
}

/* The query's codes (dp bytes, as int32 words) and scale, ‖q‖ and ‖q − q̃‖ (rounded up).
 * AVX2: qa4 gets |codes|. VNNI: q̃ has two levels, the codes and the codes of what they
 * leave (a second dot product per row, free where the pass waits for memory), in qa4 at
 * scale qs2, which leaves ‖q − q̃‖ ≈ 1/250 of one level's and the bound half as wide;
 * qsum = 128 Σ codes, qsum2 the same of the second level. `x` is scratch of d doubles. */
static void quantize_query(const float *q, int64_t d, int64_t dp, int vnni, double *x,
                           int32_t *qc4, int32_t *qa4, int32_t *qsum, int32_t *qsum2, float *qs,
                           float *qs2, float *qn, float *qe) {
    int8_t *qc = (int8_t *)qc4, *qa = (int8_t *)qa4;  // char types may alias anything
    double n2 = 0.0;
    for (int64_t j = 0; j < d; j++) {
        x[j] = q[j];
        n2 += x[j] * x[j];
    }
    int32_t sum = 0, sum2 = 0;
    const float a = quantize(x, d, dp, qc, &sum);
    for (int64_t j = 0; j < d; j++) x[j] -= (double)a * qc[j];
    float a2 = 0.0f;
    if (vnni) {
        a2 = quantize(x, d, dp, qa, &sum2);
        for (int64_t j = 0; j < d; j++) x[j] -= (double)a2 * qa[j];
    } else {
        for (int64_t j = 0; j < dp; j++) qa[j] = (int8_t)(qc[j] < 0 ? -qc[j] : qc[j]);
    }
    double e2 = 0.0;
    for (int64_t j = 0; j < d; j++) e2 += x[j] * x[j];
    *qsum = 128 * sum;
    *qsum2 = 128 * sum2;
    *qs = a;
    *qs2 = a2;
    *qn = (float)(sqrt(n2) * (1.0 + 0x1p-20));
    *qe = (float)(sqrt(e2) * (1.0 + 0x1p-20)) + 1e-30f;
}

static int has_vnni(void) {
    static int known = -1;
    if (known < 0) {
        __builtin_cpu_init();
        known = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                __builtin_cpu_supports("avx512vnni");
    }
    return known;
}

/* The top-k of b queries q (b, d) over n memories: codes in blocks of 16 rows as above
 * (dp a multiple of 4), scale/err/nrm (≥ n, a multiple of 16, read 16 at a time) as above,
 * xb (n, d) their float32 rows. m ≥ k candidates per query to start with. Outputs (b, k)
 * exact scores descending and row numbers, padded with (−inf, −1) beyond n, and scored
 * (b,): how many exact scores each query took. avx2_only: never the VNNI products (tests
 * compare the two). Returns 0, or −1 if memory ran out. */
int lam_sq8_search(const float *q, int64_t b, int64_t d, const int8_t *codes, int64_t dp,
                   const float *scale, const float *err, const float *nrm, const float *xb,
                   int64_t n, int64_t m, int64_t k, int threads, int avx2_only,
                   float *out_s, int64_t *out_row, int64_t *scored) {
    for (int64_t qi = 0; qi < b; qi++) scored[qi] = 0;
    if (n < 1 || k < 1 || b < 1 || dp % 4 != 0) {
        for (int64_t j = 0; j < b * k; j++) {
            out_s[j] = -INFINITY;
            out_row[j] = -1;
        }
        return n < 1 || k < 1 || b < 1 ? 0 : -1;
    }
    const int64_t nblk = (n + ROWS - 1) / ROWS;
    if (threads < 1) threads = 1;
    if (threads > nblk) threads = (int)nblk;
    const int64_t kk = k < n ? k : n;
    if (m < kk) m = kk;
    if (m > n) m = n;
    const int64_t nd4 = dp / 4;
    const int vnni = !avx2_only && has_vnni();
    int32_t *qc4 = (int32_t *)malloc(sizeof(int32_t) * (size_t)(b * nd4));
    int32_t *qa4 = (int32_t *)malloc(sizeof(int32_t) * (size_t)(b * nd4));
    int32_t *qsum = (int32_t *)malloc(sizeof(int32_t) * (size_t)(2 * b));
    float *qf = (float *)malloc(sizeof(float) * (size_t)(4 * b));
    double *qx = (double *)malloc(sizeof(double) * (size_t)d);
    int64_t *todo = (int64_t *)malloc(sizeof(int64_t) * (size_t)b);
    uint8_t *failed = (uint8_t *)malloc((size_t)b);
    Scan *parts = (Scan *)calloc((size_t)threads, sizeof(Scan));
    pthread_t *tid = (pthread_t *)calloc((size_t)threads, sizeof(pthread_t));
    float *es = (float *)malloc(sizeof(float) * (size_t)(threads * kk));
    int64_t *er = (int64_t *)malloc(sizeof(int64_t) * (size_t)(threads * kk));
    Cand *buf = NULL, *all_c = NULL;
    int64_t *cnt = NULL;
    float *tau = NULL;
    int rc = -1;
    if (!qc4 || !qa4 || !qsum || !qf || !qx || !todo || !failed || !parts || !tid || !es || !er)
        goto done;
    for (int64_t qi = 0; qi < b; qi++) todo[qi] = qi;
    int64_t left = b;
    while (left > 0) {
        // The queries of this round, compacted: their codes first.
        for (int64_t qi = 0; qi < left; qi++)
            quantize_query(q + todo[qi] * d, d, dp, vnni, qx, qc4 + qi * nd4, qa4 + qi * nd4,
                           qsum + qi, qsum + left + qi, qf + qi, qf + 3 * b + qi, qf + b + qi,
                           qf + 2 * b + qi);
        free(buf);
        free(all_c);
        free(cnt);
        free(tau);
        buf = (Cand *)malloc(sizeof(Cand) * (size_t)(threads * left * BUF * m));
        all_c = (Cand *)malloc(sizeof(Cand) * (size_t)(threads * threads * BUF * m));
        cnt = (int64_t *)malloc(sizeof(int64_t) * (size_t)(threads * left));
        tau = (float *)malloc(sizeof(float) * (size_t)(threads * left));
        if (!buf || !all_c || !cnt || !tau) goto done;
        const int t2 = left < threads ? (int)left : threads;
        for (int t = 0; t < threads; t++)
            parts[t] = (Scan){.b = left, .d = d, .dp = dp, .n = n, .m = m, .k = k, .q = q,
                              .scale = scale, .err = err, .nrm = nrm, .xb = xb, .codes = codes,
                              .qc4 = qc4, .qa4 = qa4, .qsum = qsum, .qs = qf, .qs2 = qf + 3 * b, .qn = qf + b,
                              .qe = qf + 2 * b, .todo = todo, .buf = buf + t * left * BUF * m,
                              .cnt = cnt + t * left, .tau = tau + t * left,
                              .all_c = all_c + t * threads * BUF * m, .es = es + t * kk,
                              .er = er + t * kk, .blk0 = nblk * t / threads,
                              .blk1 = nblk * (t + 1) / threads, .q0 = t, .qstep = t2,
                              .threads = threads, .vnni = vnni,
                              .all = parts, .out_s = out_s, .out_row = out_row,
                              .scored = scored, .failed = failed};
        run_threads(scan_rows, parts, sizeof(Scan), threads, tid);
        run_threads(certify_queries, parts, sizeof(Scan), t2, tid);
        int64_t again = 0;
        for (int64_t qi = 0; qi < left; qi++)
            if (failed[qi]) todo[again++] = todo[qi];
        left = again;
        m = m * 4 < n ? m * 4 : n;  // at m = n nothing is outside: every query certifies
    }
    rc = 0;
done:
    free(qc4);
    free(qa4);
    free(qsum);
    free(qf);
    free(qx);
    free(todo);
    free(failed);
    free(parts);
    free(tid);
    free(es);
    free(er);
    free(buf);
    free(all_c);
    free(cnt);
    free(tau);
    return rc;
}

/* ---- building the codes (index/sq8.py) -------------------------------------------------- */

static float round_up(double v) {
    float f = (float)v;
    return (double)f < v ? nextafterf(f, INFINITY) : f;
}

typedef struct {
    const float *x;
    int64_t r0, r1, d, dp, start;
    int8_t *blocks;
    float *scale, *err, *nrm;
} Encode;

/* Rows r0 … r1 − 1 of x as rows start + r0 … of the codes: a = max|ξ| / 127, c = round(ξ / a)
 * (to even, clamped), err ≥ ‖ξ − a c‖ plus (d + 8)·2⁻²² ‖ξ‖, nrm ≥ ‖a c‖, in float64. */
static void *encode_rows(void *p) {
    const Encode *a = (const Encode *)p;
    const int64_t nd4 = a->dp / 4;
    for (int64_t i = a->r0; i < a->r1; i++) {
        const float *row = a->x + i * a->d;
        double amax = 0.0;
        for (int64_t j = 0; j < a->d; j++) amax = fmax(amax, fabs((double)row[j]));
        const float s = (float)(amax / 127.0);
        const double s64 = s;
        const int64_t r = a->start + i;
        int8_t *blk = a->blocks + (r / ROWS) * nd4 * 64 + (r % ROWS) * 4;
        double e2 = 0.0, q2 = 0.0, n2 = 0.0;
        for (int64_t j = 0; j < a->dp; j++) {
            long c = 0;
            if (j < a->d && s > 0.0f) {
                c = lrint((double)row[j] / s64);
                c = c > 127 ? 127 : (c < -127 ? -127 : c);
            }
            blk[(j / 4) * 64 + j % 4] = (int8_t)c;
            if (j < a->d) {
                const double x = row[j], dq = (double)c * s64;
                e2 += (x - dq) * (x - dq);
                q2 += dq * dq;
                n2 += x * x;
            }
        }
        const double slack = (double)(a->d + 8) * 0x1p-22 * sqrt(n2);
        a->scale[r] = s;
        a->err[r] = round_up(sqrt(e2) * (1.0 + 0x1p-20) + slack);
        a->nrm[r] = round_up(sqrt(q2) * (1.0 + 0x1p-20));
    }
    return NULL;
}

/* Encode n rows x (n, d) into the blocked codes at rows start … start + n − 1 (the blocks
 * and the (n_total,) scale/err/nrm arrays are the caller's). Returns 0, or −1 if memory ran
 * out. */
int lam_sq8_encode(const float *x, int64_t n, int64_t d, int64_t dp, int64_t start,
                   int8_t *blocks, float *scale, float *err, float *nrm, int threads) {
    if (n < 1) return 0;
    if (threads < 1) threads = 1;
    if (threads > n) threads = (int)n;
    Encode *parts = (Encode *)calloc((size_t)threads, sizeof(Encode));
    pthread_t *tid = (pthread_t *)calloc((size_t)threads, sizeof(pthread_t));
    if (!parts || !tid) {
        free(parts);
        free(tid);
        return -1;
    }
    for (int t = 0; t < threads; t++)
        parts[t] = (Encode){.x = x, .r0 = n * t / threads, .r1 = n * (t + 1) / threads, .d = d,
                            .dp = dp, .start = start, .blocks = blocks, .scale = scale,
                            .err = err, .nrm = nrm};
    run_threads(encode_rows, parts, sizeof(Encode), threads, tid);
    free(parts);
    free(tid);
    return 0;
}
