/* SPDX-License-Identifier: MIT */
/* Submanifold 3x3x3 convolution on the device, gather–GEMM–scatter, the twin of
 * cpu_subm_conv.c. spconv's KRSC weight [cout, 3, 3, 3, cin] read flat is [cout, 27·cin];
 * column block r multiplies the neighbour at offset r. On a surface only ~9 of the 27
 * neighbours exist, so each offset gets its own GEMM over just the rows that have it:
 *
 *   1. y = b (or 0), as the CPU starts each output row;
 *   2. for every offset r, the output rows i with nbr[i, r] >= 0, in ascending order (CUB's
 *      DeviceSelect, stable), all 27 lists at once, and their counts read back in one copy:
 *      the GEMM sizes are the only thing the host needs;
 *   3. per offset in order: gather x[nbr[i, r]] into a scratch, one cuda_gemm_w with
 *      W_r = columns [r·cin, (r+1)·cin), and add the products into their rows of y.
 *
 * Each output row receives at most one product per offset and the offsets run in sequence on
 * one stream, so the scatter needs no atomics, and every element of y sums b + o_0 + o_1 + …
 * in the CPU's order. An offset that every row has (the centre, always) scatters to the
 * identity, so its GEMM accumulates straight into y. */
#include <errno.h>

#include <cub/device/device_select.cuh>

#include "cuda_backend.h"

#define BLOCK 256

/* A row has the neighbour at offset r. */
struct has_offset {
        const int32_t *nbr;
        int r;
        __host__ __device__ bool operator()(int32_t i) const {
                return nbr[(int64_t) i * 27 + r] >= 0;
        }
};

/* The candidate rows 0..n-1, fed to DeviceSelect. */
__global__ static void conv_iota(int32_t *v, int64_t n) {
        for (int64_t i = blockIdx.x * (int64_t) blockDim.x + threadIdx.x; i < n;
             i += (int64_t) gridDim.x * blockDim.x)
                v[i] = (int32_t) i;
}

__global__ static void conv_bias(float *y, int64_t ldy, int64_t n, int64_t cout, const float *b) {
        int64_t total = n * cout;
        for (int64_t e = blockIdx.x * (int64_t) blockDim.x + threadIdx.x; e < total;
             e += (int64_t) gridDim.x * blockDim.x) {
                int64_t i = e / cout, c = e - i * cout;
                y[i * ldy + c] = b ? b[c] : 0.0f;
        }
}

/* g[k, :] = x[nbr[rows[k], r], :] for k < cnt. */
__global__ static void conv_gather(const float *x, int64_t ldx, int64_t cin, const int32_t *nbr,
                                   int r, const int32_t *rows, int64_t cnt, float *g) {
        int64_t total = cnt * cin;
        for (int64_t e = blockIdx.x * (int64_t) blockDim.x + threadIdx.x; e < total;
             e += (int64_t) gridDim.x * blockDim.x) {
                int64_t k = e / cin, c = e - k * cin;
                int64_t j = nbr[(int64_t) rows[k] * 27 + r];
                g[e] = x[j * ldx + c];
        }
}

/* y[rows[k], :] += o[k, :] for k < cnt. */
__global__ static void conv_scatter(const float *o, int64_t cout, const int32_t *rows, int64_t cnt,
                                    float *y, int64_t ldy) {
        int64_t total = cnt * cout;
        for (int64_t e = blockIdx.x * (int64_t) blockDim.x + threadIdx.x; e < total;
             e += (int64_t) gridDim.x * blockDim.x) {
                int64_t k = e / cout, c = e - k * cout;
                y[(int64_t) rows[k] * ldy + c] += o[e];
        }
}

/* Device scratch of one convolution. */
typedef struct conv_scratch {
        int32_t *rows;  /* [27, n] the rows that have each offset, ascending */
        int32_t *iota;  /* [n] */
        int32_t *count; /* [27] on the device */
        void *cub;
        size_t cub_bytes;
        float *in, *out; /* [max count, cin], [max count, cout] */
} conv_scratch;

/* Step 2: the row lists of all 27 offsets, and their counts on the host. */
static int conv_select(p3_backend *be, const int32_t *nbr, int n, conv_scratch *sc,
                       int32_t count[27]) {
        cudaStream_t st = cuda_st(be)->stream;
        conv_iota<<<cuda_grid(n, BLOCK), BLOCK, 0, st>>>(sc->iota, n);
        int e = cuda_check_launch(be, "conv_iota");
        for (int r = 0; r < 27 && e == 0; r++) {
                size_t bytes = sc->cub_bytes;
                has_offset pred = {nbr, r};
                e = cuda_check(be,
                               cub::DeviceSelect::If(sc->cub, bytes, sc->iota,
                                                     sc->rows + (int64_t) r * n, sc->count + r, n,
                                                     pred, st),
                               "cub::DeviceSelect::If");
        }
        if (e < 0)
                return e;
        e = cuda_check(
                be,
                cudaMemcpyAsync(count, sc->count, 27 * sizeof(int32_t), cudaMemcpyDeviceToHost, st),
                "cudaMemcpyAsync (conv counts)");
        if (e < 0)
                return e;
        return cuda_check(be, cudaStreamSynchronize(st), "cudaStreamSynchronize");
}

/* Step 3 for one offset. */
static int conv_offset(p3_backend *be, const p3_tensor *x, const int32_t *nbr, const p3_tensor *w,
                       p3_tensor *y, int r, int64_t cnt, const conv_scratch *sc) {
        cudaStream_t st = cuda_st(be)->stream;
        int64_t n = x->rows, cin = x->cols, cout = y->cols;
        const int32_t *rows = sc->rows + r * n;
        conv_gather<<<cuda_grid(cnt * cin, BLOCK), BLOCK, 0, st>>>(
                (const float *) x->data, p3_ld(x), cin, nbr, r, rows, cnt, sc->in);
        int e = cuda_check_launch(be, "conv_gather");
        if (e < 0)
                return e;
        /* every row has this offset: its list is 0..n-1, so y itself is the output */
        if (cnt == n)
                return cuda_gemm_w(be, cnt, cin, sc->in, cin, w, r * cin, (float *) y->data,
                                   p3_ld(y), true);
        e = cuda_gemm_w(be, cnt, cin, sc->in, cin, w, r * cin, sc->out, cout, false);
        if (e < 0)
                return e;
        conv_scatter<<<cuda_grid(cnt * cout, BLOCK), BLOCK, 0, st>>>(sc->out, cout, rows, cnt,
                                                                     (float *) y->data, p3_ld(y));
        return cuda_check_launch(be, "conv_scatter");
}

static int conv_run(p3_backend *be, const p3_tensor *x, const int32_t *nbr, const p3_tensor *w,
                    const p3_tensor *b, p3_tensor *y, conv_scratch *sc) {
        int64_t n = x->rows, cin = x->cols, cout = y->cols;
        conv_bias<<<cuda_grid(n * cout, BLOCK), BLOCK, 0, cuda_st(be)->stream>>>(
                (float *) y->data, p3_ld(y), n, cout, b ? (const float *) b->data : NULL);
        int e = cuda_check_launch(be, "conv_bias");
        if (e < 0 || cin == 0)
                return e;

        int32_t count[27];
        if ((e = conv_select(be, nbr, (int) n, sc, count)) < 0)
                return e;
        int64_t most = 0;
        for (int r = 0; r < 27; r++) {
                if (count[r] < 0 || count[r] > n)
                        return -EIO; /* cannot happen: a corrupt read-back */
                most = count[r] > most ? count[r] : most;
        }
        if (most == 0)
                return 0;

        size_t in_bytes = sizeof(float) * most * cin, out_bytes = sizeof(float) * most * cout;
        if ((e = cuda_tmp_alloc(be, in_bytes, (void **) &sc->in)) < 0)
                return e;
        if ((e = cuda_tmp_alloc(be, out_bytes, (void **) &sc->out)) < 0) {
                cuda_tmp_free(be, sc->in, in_bytes);
                return e;
        }
        for (int r = 0; r < 27 && e == 0; r++)
                if (count[r] > 0)
                        e = conv_offset(be, x, nbr, w, y, r, count[r], sc);
        cuda_tmp_free(be, sc->out, out_bytes);
        cuda_tmp_free(be, sc->in, in_bytes);
        return e;
}

extern "C" int cuda_subm_conv(p3_backend *be, const p3_tensor *x, const int32_t *nbr,
                              const p3_tensor *w, const p3_tensor *b, p3_tensor *y) {
        if (w->cols != 27 * x->cols || y->cols != w->rows || y->rows != x->rows)
                return -EINVAL;
        if (x->dtype != P3_F32 || y->dtype != P3_F32 || x->rows > INT32_MAX)
                return -EINVAL;
        if (b && (b->dtype != P3_F32 || b->rows * b->cols != y->cols))
                return -EINVAL;
        int64_t n = x->rows;
        if (n == 0 || y->cols == 0)
                return 0;

        /* CUB's storage for one selection of n rows; the same for every offset. */
        conv_scratch sc = {};
        cudaStream_t st = cuda_st(be)->stream;
        int e = cuda_check(be,
                           cub::DeviceSelect::If((void *) NULL, sc.cub_bytes,
                                                 (const int32_t *) NULL, (int32_t *) NULL,
                                                 (int32_t *) NULL, (int) n, has_offset{nbr, 0}, st),
                           "cub::DeviceSelect::If (size)");
        if (e < 0)
                return e;

        /* One allocation for the lists, the candidates, the counts and CUB's storage, each part
         * 256-byte aligned. */
        size_t rows = (27 * sizeof(int32_t) * n + 255) & ~(size_t) 255;
        size_t iota = (sizeof(int32_t) * n + 255) & ~(size_t) 255;
        size_t bytes = rows + iota + 256 + sc.cub_bytes;
        void *mem = NULL;
        if ((e = cuda_tmp_alloc(be, bytes, &mem)) < 0)
                return e;
        char *p = (char *) mem;
        sc.rows = (int32_t *) p;
        sc.iota = (int32_t *) (p + rows);
        sc.count = (int32_t *) (p + rows + iota);
        sc.cub = p + rows + iota + 256;
        e = conv_run(be, x, nbr, w, b, y, &sc);
        cuda_tmp_free(be, mem, bytes);
        return e;
}
