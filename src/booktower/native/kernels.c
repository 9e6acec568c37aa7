/* booktower's CPU kernels: the training step's row-wise passes that PyTorch would run as many small ops.
 *
 * Threads: the large row loops run on PyTorch's own OpenMP pool (see PARALLEL_ROWS); a second pool would
 * fight PyTorch's for the cores (splitting the softmax block's rows over two Python threads was slower than one
 * thread). The merges, which write rows in first-seen order, stay serial. Every function checks its indices
 * against the table it writes and returns -1 on the first one out of range, before writing anything through it. float32 values, int64 indices, row-major and contiguous. Workspaces
 * named `slot` or `head` hold one int64 per table row, all -1 on entry, and are -1 again on return.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

/* Rows ahead whose cache lines are requested early in the row-wise loops over large tables. */
#ifndef PREFETCH_AHEAD
#define PREFETCH_AHEAD 4
#endif
#define FLOATS_PER_LINE 16
/* Loops over at least this many rows (entries, for the bags) are shared among PyTorch's OpenMP threads: built
 * with -fopenmp, this library binds to the libgomp that PyTorch has already loaded (same soname), so it reuses
 * PyTorch's thread pool instead of starting a second one, and follows torch.set_num_threads. */
#define PARALLEL_ROWS 4096
/* Independent partial results per reduction: one AVX2 register of floats. */
#define LANES 8

/* x86-64 builds carry an AVX2 copy of each kernel beside the baseline one, picked at load time by the CPU it
 * runs on (GCC/Clang function multi-versioning): the cached library stays portable, and the sqrt and division
 * of the Adam update take half the time at 8 lanes (0.85 vs 1.2 ms for 14k rows of 32). */
#if defined(__x86_64__) && defined(__ELF__) && defined(__GNUC__) && !defined(BOOKTOWER_NO_CLONES)
#define KERNEL __attribute__((target_clones("avx2", "default")))
#else
#define KERNEL
#endif

/* Adam on the rows of a sparse gradient given as entries (index[e], values[e, :]), rows possibly repeated and
 * in any order: each row's entries are summed first (the update is not linear), then
 *   m = m + (1 - beta1) (g - m);  v = beta2 v + (1 - beta2) g^2;  p -= step_size m / (sqrt(v) + eps).
 * `rows` (n_entries) and `merged` (min(n_entries, n_rows) x dim) are workspaces. Only rows r with
 * r % parts == part are updated (parts = 1: all), so that `parts` threads can apply one gradient together, each
 * to its own rows. Returns the number of distinct rows updated. */
KERNEL int64_t bt_lazy_adam(float *param, float *exp_avg, float *exp_avg_sq, int64_t n_rows, int64_t dim,
                     const int64_t *index, const float *values, int64_t n_entries,
                     int64_t *slot, int64_t *rows, int64_t *first, float *merged,
                     float step_size, float beta2, float eps, float one_minus_beta1, float one_minus_beta2,
                     int64_t part, int64_t parts) {
    for (int64_t e = 0; e < n_entries; e++)
        if (index[e] < 0 || index[e] >= n_rows) return -1;
    if (parts < 1 || part < 0 || part >= parts) return -1;
    /* 1 - beta comes from the caller, computed in double: 1.0f - 0.999f is off by 1.3e-5 relative */
    const float keep1 = one_minus_beta1, keep2 = one_minus_beta2;
    /* a 64-bit division per entry cost as much as the update: a mask where parts is a power of two */
    const uint64_t mask = (uint64_t)parts - 1;
    const int pow2 = (parts & (int64_t)mask) == 0;
#define MINE(r) (parts == 1 || (pow2 ? ((uint64_t)(r) & mask) == (uint64_t)part : (r) % parts == part))
    /* First pass: each row's first entry. Without repeats (the usual case for ID lookups of distinct ids) the
     * update reads the entries in place, with no merged copy. */
    int64_t n_distinct = 0, n_kept = 0;
    for (int64_t e = 0; e < n_entries; e++) {
        if (!MINE(index[e])) continue;
        n_kept++;
        if (slot[index[e]] < 0) {
            slot[index[e]] = n_distinct;
            first[n_distinct] = e;
            rows[n_distinct++] = index[e];
        }
    }
    const int repeats = n_distinct < n_kept;
    if (repeats) {
        memset(merged, 0, (size_t)(n_distinct * dim) * sizeof(float));
        for (int64_t e = 0; e < n_entries; e++) {
            if (!MINE(index[e])) continue;
            float *acc = merged + slot[index[e]] * dim;
            const float *g = values + e * dim;
            for (int64_t j = 0; j < dim; j++) acc[j] += g[j];
        }
    }
#undef MINE
    /* Rows in first-seen order, with the next rows' lines requested early: visiting them in ascending order
     * instead (a scan of the marker table) made the whole step slower, as the entries are then read at random. */
    /* rows are distinct, so threads never write the same row */
#pragma omp parallel for schedule(static) if (n_distinct >= PARALLEL_ROWS)
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
        slot[row] = -1;
        /* row k's summed gradient; without repeats, its only entry */
        const float *g = repeats ? merged + k * dim : values + first[k] * dim;
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
#pragma omp parallel for schedule(static) if (n_bags * length >= PARALLEL_ROWS)
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
 * sum of weights[b, l] * grad[b, :] over the entries holding that row. `rows` holds n_bags x length entries and
 * `values` min(n_bags x length, n_rows) x dim: one row per distinct item at most. Returns the number of rows. */
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

/* exp(x) for x <= 0 (a logit minus its row's maximum), written without branches or calls so that the compiler
 * vectorises the loops that use it: x = n ln2 + r with |r| <= ln2 / 2, exp(r) by its degree-6 Taylor polynomial
 * (relative error below 2e-7 there), times 2^n built in the exponent bits. Below -87.3 (where float's exp
 * leaves the normal range), and for -inf (masked logits), it returns 0. */
static inline float nonpositive_expf(float x) {
    const float log2e = 1.44269504088896341f, ln2_hi = 0.693359375f, ln2_lo = -2.12194440e-4f;
    float clamped = x < -87.0f ? -87.0f : x;
    /* round to nearest by the 1.5 * 2^23 trick: roundf is a library call that stops the vectoriser */
    const float round_magic = 12582912.0f;
    float n = (clamped * log2e + round_magic) - round_magic;
    float r = clamped - n * ln2_hi - n * ln2_lo;
    float p = 1.0f + r * (1.0f + r * (0.5f + r * (1.0f / 6 + r * (1.0f / 24 + r * (1.0f / 120 + r * (1.0f / 720))))));
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return x < -87.3f ? 0.0f : p * scale;
}

/* One block of the in-batch sampled softmax, in place. On entry z (n_rows x n_cols) holds the logits q_b . v_c
 * of rows first_row.. of the batch; bias (n_cols, or NULL) is added to every row, and the (masked_rows[k],
 * masked_cols[k]) entries of this block (batch rows, ascending) are left out of the softmax. On return z holds
 * d(sum of the rows' losses)/dz = softmax - one-hot(positive[b]); the rows' summed loss
 * logsumexp_c(z_bc) - z_b,positive[b] is returned (as a double, summed in double), or -1 for a column out of
 * range or masked rows out of order, before anything is written. A positive column that is also masked stays
 * in: a row's own positive is never a negative. */
KERNEL double bt_softmax_block(float *z, int64_t n_rows, int64_t n_cols, const float *bias, const int64_t *positive,
                               int64_t first_row, const int64_t *masked_rows, const int64_t *masked_cols,
                               int64_t n_masked) {
    for (int64_t b = 0; b < n_rows; b++)
        if (positive[b] < 0 || positive[b] >= n_cols) return -1.0;
    for (int64_t k = 0; k < n_masked; k++)
        if (masked_cols[k] < 0 || masked_cols[k] >= n_cols || (k > 0 && masked_rows[k] < masked_rows[k - 1]))
            return -1.0;
    double total = 0.0;
#pragma omp parallel for schedule(static) reduction(+ : total) if (n_rows * n_cols >= PARALLEL_ROWS * 64)
    for (int64_t b = 0; b < n_rows; b++) {
        float *row = z + b * n_cols;
        if (bias)
            for (int64_t c = 0; c < n_cols; c++) row[c] += bias[c];
        const int64_t pos = positive[b];
        const float z_pos = row[pos];
        /* this row's masked entries: the first with masked_rows >= first_row + b, by binary search */
        int64_t lo = 0, hi = n_masked;
        while (lo < hi) {
            int64_t mid = lo + (hi - lo) / 2;
            if (masked_rows[mid] < first_row + b) lo = mid + 1; else hi = mid;
        }
        for (int64_t k = lo; k < n_masked && masked_rows[k] == first_row + b; k++)
            if (masked_cols[k] != pos) row[masked_cols[k]] = -INFINITY;
        /* max and sum in LANES independent partial results, so that they vectorise without -ffast-math */
        float lane[LANES];
        for (int j = 0; j < LANES; j++) lane[j] = -INFINITY;
        int64_t c = 0;
        for (; c + LANES <= n_cols; c += LANES)
            for (int j = 0; j < LANES; j++) lane[j] = row[c + j] > lane[j] ? row[c + j] : lane[j];
        float peak = lane[0];
        for (int j = 1; j < LANES; j++) peak = lane[j] > peak ? lane[j] : peak;
        for (; c < n_cols; c++) peak = row[c] > peak ? row[c] : peak;
        for (c = 0; c < n_cols; c++) row[c] = nonpositive_expf(row[c] - peak);
        for (int j = 0; j < LANES; j++) lane[j] = 0.0f;
        for (c = 0; c + LANES <= n_cols; c += LANES)
            for (int j = 0; j < LANES; j++) lane[j] += row[c + j];
        float sum = 0.0f;
        for (int j = 0; j < LANES; j++) sum += lane[j];
        for (; c < n_cols; c++) sum += row[c];
        total += (double)peak + log((double)sum) - (double)z_pos;
        const float inverse = 1.0f / sum;
        for (int64_t c = 0; c < n_cols; c++) row[c] *= inverse;
        row[pos] -= 1.0f;
    }
    return total;
}
