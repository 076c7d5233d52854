/* What the native searches share (lam_ivf.c, lam_sq8.c): a float32 dot product, a bounded
 * min-heap of (score, id) and a thread runner. Static: each translation unit has its own. */
#ifndef LAM_HEAP_H
#define LAM_HEAP_H
#include <immintrin.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>

#define INLINE static inline __attribute__((always_inline))

INLINE float hsum8(__m256 x) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

INLINE float dot1(const float *x, const float *q, int64_t d) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t j = 0;
    for (; j + 16 <= d; j += 16) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + j), _mm256_loadu_ps(q + j), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + j + 8), _mm256_loadu_ps(q + j + 8), a1);
    }
    for (; j + 8 <= d; j += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + j), _mm256_loadu_ps(q + j), a0);
    float s = hsum8(_mm256_add_ps(a0, a1));
    for (; j < d; j++) s += x[j] * q[j];
    return s;
}

/* A min-heap of at most k (score, id): the k best seen, the worst of them at the root. */
typedef struct {
    float *s;
    int64_t *id;
    int64_t n, k;
} Heap;

/* Put (s, id) at the root's place and sift it down (the root's old entry leaves). */
static inline void heap_sift_root(Heap *h, float s, int64_t id) {
    int64_t i = 0;
    for (;;) {
        int64_t c = 2 * i + 1;
        if (c >= h->n) break;
        if (c + 1 < h->n && h->s[c + 1] < h->s[c]) c++;
        if (h->s[c] >= s) break;
        h->s[i] = h->s[c];
        h->id[i] = h->id[c];
        i = c;
    }
    h->s[i] = s;
    h->id[i] = id;
}

static inline void heap_push(Heap *h, float s, int64_t id) {
    if (h->n == h->k) {
        if (s > h->s[0]) heap_sift_root(h, s, id);
        return;
    }
    int64_t i = h->n++;
    while (i > 0) {  // sift up
        int64_t p = (i - 1) / 2;
        if (h->s[p] <= s) break;
        h->s[i] = h->s[p];
        h->id[i] = h->id[p];
        i = p;
    }
    h->s[i] = s;
    h->id[i] = id;
}

INLINE float heap_floor(const Heap *h) { return h->n < h->k ? -INFINITY : h->s[0]; }

/* Empty the heap into out (descending), padded with (−inf, −1) to k. */
static inline void heap_drain(Heap *h, float *out_s, int64_t *out_id) {
    for (int64_t j = h->n; j < h->k; j++) {
        out_s[j] = -INFINITY;
        out_id[j] = -1;
    }
    while (h->n > 0) {  // the worst into the last free slot; the last entry to the root
        out_s[h->n - 1] = h->s[0];
        out_id[h->n - 1] = h->id[0];
        h->n--;
        if (h->n) heap_sift_root(h, h->s[h->n], h->id[h->n]);
    }
}

/* fn(args[t]) for t < threads (args: an array of `size`-byte structs), t ≥ 1 on threads of
 * their own and t = 0 on the caller's; a thread the system refuses runs on the caller's. */
static inline void run_threads(void *(*fn)(void *), void *args, size_t size, int threads,
                               pthread_t *tid) {
    char *a = (char *)args;
    int started = 1;
    for (; started < threads; started++)
        if (pthread_create(&tid[started], NULL, fn, a + (size_t)started * size) != 0) break;
    for (int t = started; t < threads; t++) fn(a + (size_t)t * size);
    fn(a);
    for (int t = 1; t < started; t++) pthread_join(tid[t], NULL);
}

#endif
