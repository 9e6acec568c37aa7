/* booktower's CPU kernels: the training step's row-wise passes that PyTorch would run as many small ops.
 *
 * Single-threaded on purpose: a second thread pool (OpenMP's own, here) would fight PyTorch's for the cores
 * between ops. Every function checks its indices against the table it writes and returns -1 on the first one
 * out of range, before writing anything through it. float32 values, int64 indices, row-major and contiguous.
 * Workspaces named `slot` or `head` hold one int64 per table row, all -1 on entry, and are -1 again on return.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

/* Rows ahead whose cache lines are requested early in the row-wise loops over large tables. */
#ifndef PREFETCH_AHEAD
#define PREFETCH_AHEAD 4
#endif
#define FLOATS_PER_LINE 16

/* x86-64 builds carry an AVX2 copy of each kernel beside the baseline one, picked at load time by the CPU it
 * runs on (GCC/Clang function multi-versioning): the cached library stays portable, and the sqrt and division
 * of the Adam update take half the time at 8 lanes (0.85 vs 1.2 ms for 14k rows of 32). */
#if defined(__x86_64__) && defined(__ELF__) && defined(__GNUC__)
#define KERNEL __attribute__((target_clones("avx2", "default")))
#else
#define KERNEL
#endif
/* Visit a table's rows by scanning its marker table when it has at most this many rows per entry. */
#ifndef SCAN_ROWS_PER_ENTRY
#define SCAN_ROWS_PER_ENTRY 0
#endif

/* Adam on the rows of a sparse gradient given as entries (index[e], values[e, :]), rows possibly repeated and
 * in any order: each row's entries are summed first (the update is not linear), then
 *   m = m + (1 - beta1) (g - m);  v = beta2 v + (1 - beta2) g^2;  p -= step_size m / (sqrt(v) + eps).
 * `rows` (n_entries) and `merged` (n_entries x dim) are workspaces. Returns the number of distinct rows. */
KERNEL int64_t bt_lazy_adam(float *param, float *exp_avg, float *exp_avg_sq, int64_t n_rows, int64_t dim,
                     const int64_t *index, const float *values, int64_t n_entries,
                     int64_t *slot, int64_t *rows, float *merged,
                     float step_size, float beta2, float eps, float one_minus_beta1, float one_minus_beta2) {
    for (int64_t e = 0; e < n_entries; e++)
        if (index[e] < 0 || index[e] >= n_rows) return -1;
    /* 1 - beta comes from the caller, computed in double: 1.0f - 0.999f is off by 1.3e-5 relative */
    const float keep1 = one_minus_beta1, keep2 = one_minus_beta2;
    /* First pass: each row's first entry. Without repeats (the usual case for ID lookups of distinct ids) the
     * update reads the entries in place, with no merged copy. */
    int64_t n_distinct = 0;
    for (int64_t e = 0; e < n_entries; e++) {
        if (slot[index[e]] < 0) {
            slot[index[e]] = n_distinct;
            rows[n_distinct++] = index[e];
        }
    }
    const int repeats = n_distinct < n_entries;
    if (repeats) {
        memset(merged, 0, (size_t)(n_distinct * dim) * sizeof(float));
        for (int64_t e = 0; e < n_entries; e++) {
            float *acc = merged + slot[index[e]] * dim;
            const float *g = values + e * dim;
            for (int64_t j = 0; j < dim; j++) acc[j] += g[j];
        }
    }
    /* The rows are visited in ascending order where the marker table is small enough to scan: the tables
     * are far larger than the cache and ascending rows let the hardware prefetcher stream them. */
    if (n_rows <= SCAN_ROWS_PER_ENTRY * n_entries) {
        int64_t k = 0;
        for (int64_t row = 0; row < n_rows && k < n_distinct; row++)
            if (slot[row] >= 0) rows[k++] = row;
    }
    for (int64_t k = 0; k < n_distinct; k++) {
        if (k + PREFETCH_AHEAD < n_distinct) {
            int64_t ahead = rows[k + PREFETCH_AHEAD] * dim;
            for (int64_t j = 0; j < dim; j += FLOATS_PER_LINE) {
                __builtin_prefetch(param + ahead + j, 1);
                __builtin_prefetch(exp_avg + ahead + j, 1);
                __builtin_prefetch(exp_avg_sq + ahead + j, 1);
            }
        }
        int64_t row = rows[k];
        int64_t s = slot[row];
        slot[row] = -1;
        /* without repeats, slot s is entry s */
        const float *g = (repeats ? merged : values) + s * dim;
        float *p = param + row * dim, *m = exp_avg + row * dim, *v = exp_avg_sq + row * dim;
        for (int64_t j = 0; j < dim; j++) {
            float mj = m[j] + keep1 * (g[j] - m[j]);
            float vj = v[j] * beta2 + keep2 * g[j] * g[j];
            m[j] = mj;
            v[j] = vj;
            p[j] -= step_size * (mj / (sqrtf(vj) + eps));
        }
    }
    return n_distinct;
}

/* out[b, :] = sum over l of weights[b, l] * table[history[b, l], :], skipping history entries < 0 (padding). */
KERNEL int64_t bt_bag_forward(const float *table, int64_t n_rows, int64_t dim, const int64_t *history,
                       const float *weights, int64_t n_bags, int64_t length, float *out) {
    for (int64_t i = 0; i < n_bags * length; i++)
        if (history[i] >= n_rows) return -1;
    for (int64_t b = 0; b < n_bags; b++) {
        float *o = out + b * dim;
        memset(o, 0, (size_t)dim * sizeof(float));
        for (int64_t l = 0; l < length; l++) {
            int64_t item = history[b * length + l];
            if (b * length + l + PREFETCH_AHEAD < n_bags * length && history[b * length + l + PREFETCH_AHEAD] >= 0) {
                const float *ahead = table + history[b * length + l + PREFETCH_AHEAD] * dim;
                for (int64_t j = 0; j < dim; j += FLOATS_PER_LINE) __builtin_prefetch(ahead + j, 0);
            }
            if (item < 0) continue;
            float w = weights[b * length + l];
            const float *t = table + item * dim;
            for (int64_t j = 0; j < dim; j++) o[j] += w * t[j];
        }
    }
    return 0;
}

/* The table gradient of bt_bag_forward as sparse rows: rows[k] (first-seen order, each once) and values[k, :] =
 * sum of weights[b, l] * grad[b, :] over the entries holding that row. `rows` (n_bags x length) and `values`
 * (n_bags x length x dim) are outputs of sufficient size. Returns the number of rows. */
KERNEL int64_t bt_bag_backward(const float *grad, int64_t dim, const int64_t *history, const float *weights,
                        int64_t n_bags, int64_t length, int64_t n_rows, int64_t *slot, int64_t *rows,
                        float *values) {
    for (int64_t i = 0; i < n_bags * length; i++)
        if (history[i] >= n_rows) return -1;
    int64_t n_distinct = 0;
    for (int64_t b = 0; b < n_bags; b++) {
        const float *g = grad + b * dim;
        for (int64_t l = 0; l < length; l++) {
            int64_t item = history[b * length + l];
            if (item < 0) continue;
            float w = weights[b * length + l];
            int64_t s = slot[item];
            float *acc;
            if (s < 0) {
                s = slot[item] = n_distinct;
                rows[n_distinct++] = item;
                acc = values + s * dim;
                for (int64_t j = 0; j < dim; j++) acc[j] = w * g[j];
            } else {
                acc = values + s * dim;
                for (int64_t j = 0; j < dim; j++) acc[j] += w * g[j];
            }
        }
    }
    for (int64_t k = 0; k < n_distinct; k++) slot[rows[k]] = -1;
    return n_distinct;
}

/* The (row, column) pairs where shared candidate column c is one of row b's positives: the positives of row b
 * are pos_items[pos_offsets[users[b]] : pos_offsets[users[b] + 1]]. A row's own column `own[b]` is left out
 * (own may be NULL). Pairs come ordered by row; at most `capacity` are written, the count is returned either
 * way (the caller retries with more room). `head` (n_items) and `next` (n_candidates) are workspaces. */
KERNEL int64_t bt_hit_pairs(const int64_t *candidates, int64_t n_candidates, const int64_t *users, int64_t n_bags,
                     const int64_t *pos_offsets, int64_t n_users, const int64_t *pos_items, int64_t n_positives,
                     int64_t n_items,
                     const int64_t *own, int64_t *head, int64_t *next, int64_t *out_rows, int64_t *out_cols,
                     int64_t capacity) {
    for (int64_t c = 0; c < n_candidates; c++)
        if (candidates[c] < 0 || candidates[c] >= n_items) return -1;
    for (int64_t b = 0; b < n_bags; b++)
        if (users[b] < 0 || users[b] >= n_users) return -1;
    /* each item's columns as a linked list, built backwards so it reads in ascending column order */
    for (int64_t c = n_candidates - 1; c >= 0; c--) {
        next[c] = head[candidates[c]];
        head[candidates[c]] = c;
    }
    int64_t count = 0;
    for (int64_t b = 0; b < n_bags; b++) {
        int64_t skip = own ? own[b] : -1;
        int64_t first = pos_offsets[users[b]], last = pos_offsets[users[b] + 1];
        if (first < 0 || last > n_positives) { count = -1; goto reset; }
        for (int64_t k = first; k < last; k++) {
            int64_t item = pos_items[k];
            if (item < 0 || item >= n_items) { count = -1; goto reset; }
            for (int64_t c = head[item]; c >= 0; c = next[c]) {
                if (c == skip) continue;
                if (count < capacity) {
                    out_rows[count] = b;
                    out_cols[count] = c;
                }
                count++;
            }
        }
    }
reset:
    for (int64_t c = 0; c < n_candidates; c++) head[candidates[c]] = -1;
    return count;
}
