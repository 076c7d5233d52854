/* An inverted-file search over FAISS's own lists: the k best inner products ξ·q of the
 * memories in the nprobe lists whose centroids score highest against q.
 *
 * The same search as faiss::IndexIVFFlat::search with METRIC_INNER_PRODUCT, on the same
 * memory (the caller hands over the addresses of the index's centroids and lists, which
 * stay put while the index is not mutated), so the candidates are FAISS's up to ties and
 * float32 rounding of the sums. Why not FAISS's: a B = 1 search there scans its lists at
 * ≈ 4 GB/s on one thread, a third of this machine's read rate (docs/prefilter.md); here
 * the probed lists (or a batch's queries) are split over threads, each scans its lists a
 * row at a time with the next list's head prefetched, and a min-heap keeps the k best.
 *
 * Per query: the centroid scores (nlist × d, usually cache-resident), the nprobe best by a
 * min-heap, then the lists in the order of their centroid scores (the best lists first
 * raise the heap's floor early, so few later rows enter it). Threads take the probes
 * round-robin, so each gets good and poor lists alike; their heaps merge at the end.
 * Outputs are descending; rows beyond what was found are (−inf, −1), as FAISS pads.
 */
#include <immintrin.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lam_heap.h"

#define PREFETCH_BYTES 4096  // of the next list's head, while the current one is scanned

/* out[0..3] = x_{0..3}·q for four consecutive rows of length d. */
INLINE void dot4(const float *x, const float *q, int64_t d, float *out) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    __m256 a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    int64_t j = 0;
    for (; j + 8 <= d; j += 8) {
        __m256 qv = _mm256_loadu_ps(q + j);
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + j), qv, a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + d + j), qv, a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(x + 2 * d + j), qv, a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(x + 3 * d + j), qv, a3);
    }
    out[0] = hsum8(a0);
    out[1] = hsum8(a1);
    out[2] = hsum8(a2);
    out[3] = hsum8(a3);
    for (; j < d; j++) {
        out[0] += x[j] * q[j];
        out[1] += x[d + j] * q[j];
        out[2] += x[2 * d + j] * q[j];
        out[3] += x[3 * d + j] * q[j];
    }
}

INLINE void prefetch_head(const float *x, int64_t bytes) {
    const char *p = (const char *)x;
    for (int64_t off = 0; off < bytes; off += 64) _mm_prefetch(p + off, _MM_HINT_T0);
}

/* Scan the lists probe[t], probe[t + step], … into h, a row at a time. Measured on this
 * machine (N = 10⁵ × 384, nprobe 64, one thread): four rows at a time, or the next list
 * prefetched into L2 while this one is scanned, were 20–40 % slower; a list's rows stream
 * from DRAM at ≈ 6 GB/s either way, so threads are what gains. */
static void scan_lists(const float *q, int64_t d, const int64_t *probe, int64_t nprobe, int64_t t,
                       int64_t step, const int64_t *codes, const int64_t *ids, const int64_t *sizes,
                       Heap *h) {
    for (int64_t p = t; p < nprobe; p += step) {
        const int64_t l = probe[p];
        const float *x = (const float *)(intptr_t)codes[l];
        const int64_t *lid = (const int64_t *)(intptr_t)ids[l];
        const int64_t n = sizes[l];
        if (p + step < nprobe) {
            const int64_t nl = probe[p + step];
            const int64_t head = sizes[nl] * d * 4;
            prefetch_head((const float *)(intptr_t)codes[nl], head < PREFETCH_BYTES ? head : PREFETCH_BYTES);
        }
        for (int64_t i = 0; i < n; i++) {
            const float s = dot1(x + i * d, q, d);
            if (s > heap_floor(h)) heap_push(h, s, lid[i]);
        }
    }
}

/* The nprobe lists of highest centroid score for q, best first. */
static void coarse(const float *q, int64_t d, const float *cent, int64_t nlist, int64_t nprobe,
                   float *hs, int64_t *hid, int64_t *probe) {
    Heap h = {hs, hid, 0, nprobe};
    float sc[4];
    int64_t c = 0;
    for (; c + 4 <= nlist; c += 4) {
        dot4(cent + c * d, q, d, sc);
        for (int r = 0; r < 4; r++)
            if (sc[r] > heap_floor(&h)) heap_push(&h, sc[r], c + r);
    }
    for (; c < nlist; c++) {
        float s = dot1(cent + c * d, q, d);
        if (s > heap_floor(&h)) heap_push(&h, s, c);
    }
    float *tmp_s = hs + nprobe;  // scratch of nprobe floats after the heap
    heap_drain(&h, tmp_s, probe);
}

typedef struct {
    const float *q, *cent;
    int64_t b, d, nlist, nprobe, k;
    const int64_t *codes, *ids, *sizes;
    int64_t q0, qstep;  // whole queries q0, q0 + qstep, … (qstep 0: one query's lists)
    int64_t t, step;  // the lists probe[t], probe[t + step], … of that one query
    const int64_t *probe;  // that query's probes (qstep 0)
    float *hs, *out_s;  // heap and scratch: k + 2 nprobe each
    int64_t *hid, *out_id;
    Heap h;
} Part;

/* Whole queries: coarse, scan, drain into the outputs. */
static void whole_queries(Part *a) {
    int64_t *probe = a->hid + a->k + a->nprobe;
    for (int64_t qi = a->q0; qi < a->b; qi += a->qstep) {
        const float *qv = a->q + qi * a->d;
        coarse(qv, a->d, a->cent, a->nlist, a->nprobe, a->hs + a->k, a->hid + a->k, probe);
        Heap h = {a->hs, a->hid, 0, a->k};
        scan_lists(qv, a->d, probe, a->nprobe, 0, 1, a->codes, a->ids, a->sizes, &h);
        heap_drain(&h, a->out_s + qi * a->k, a->out_id + qi * a->k);
    }
}

static void *part_thread(void *p) {
    Part *a = (Part *)p;
    if (a->qstep)
        whole_queries(a);
    else
        scan_lists(a->q, a->d, a->probe, a->nprobe, a->t, a->step, a->codes, a->ids, a->sizes, &a->h);
    return NULL;
}

/* Search b queries q (b, d). codes/ids/sizes: per list, the address of its float32 rows,
 * the address of its int64 ids, its length. With at least as many queries as threads, a
 * thread takes whole queries; otherwise the threads split each query's lists and merge
 * their heaps. Returns 0, or −1 if memory ran out. */
int lam_ivf_search(const float *q, int64_t b, int64_t d, const float *cent, int64_t nlist,
                   int64_t nprobe, const int64_t *codes, const int64_t *ids, const int64_t *sizes,
                   int64_t k, int threads, float *out_s, int64_t *out_id) {
    if (nprobe > nlist) nprobe = nlist;
    if (nprobe < 1 || k < 1) {
        for (int64_t j = 0; j < b * k; j++) {
            out_s[j] = -INFINITY;
            out_id[j] = -1;
        }
        return 0;
    }
    if (threads < 1) threads = 1;
    const int by_query = b >= threads;
    if (!by_query && threads > nprobe) threads = (int)nprobe;
    const int64_t per = k + 2 * nprobe;  // a thread's heap, coarse heap and probes
    float *hs = (float *)malloc(sizeof(float) * (size_t)(threads * per));
    int64_t *hid = (int64_t *)malloc(sizeof(int64_t) * (size_t)(threads * per));
    Part *parts = (Part *)calloc((size_t)threads, sizeof(Part));
    pthread_t *tid = (pthread_t *)calloc((size_t)threads, sizeof(pthread_t));
    if (!hs || !hid || !parts || !tid) {
        free(hs);
        free(hid);
        free(parts);
        free(tid);
        return -1;
    }
    for (int t = 0; t < threads; t++)
        parts[t] = (Part){.q = q, .cent = cent, .b = b, .d = d, .nlist = nlist, .nprobe = nprobe,
                          .k = k, .codes = codes, .ids = ids, .sizes = sizes, .q0 = t,
                          .qstep = by_query ? threads : 0, .t = t, .step = threads,
                          .hs = hs + t * per, .hid = hid + t * per, .out_s = out_s, .out_id = out_id};
    if (by_query) {
        run_threads(part_thread, parts, sizeof(Part), threads, tid);
    } else {
        int64_t *probe = hid + k + nprobe;  // the first part's scratch
        for (int64_t qi = 0; qi < b; qi++) {
            const float *qv = q + qi * d;
            coarse(qv, d, cent, nlist, nprobe, hs + k, hid + k, probe);
            for (int t = 0; t < threads; t++) {
                parts[t].q = qv;
                parts[t].probe = probe;
                parts[t].h = (Heap){parts[t].hs, parts[t].hid, 0, k};
            }
            run_threads(part_thread, parts, sizeof(Part), threads, tid);
            Heap *h0 = &parts[0].h;
            for (int t = 1; t < threads; t++) {
                const Heap *ht = &parts[t].h;
                for (int64_t j = 0; j < ht->n; j++)
                    if (ht->s[j] > heap_floor(h0)) heap_push(h0, ht->s[j], ht->id[j]);
            }
            heap_drain(h0, out_s + qi * k, out_id + qi * k);
        }
    }
    free(hs);
    free(hid);
    free(parts);
    free(tid);
    return 0;
}
