/* SPDX-License-Identifier: MIT */
/* Every matrix product of the CPU backend, FP32 and BF16, on oneDNN's matmul primitive
 * (oneDNN 2.6 C API; Debian's has no public BF16 gemm function, and the primitive is what
 * reaches the brgemm AMX / AVX512-BF16 / AVX-512 / AVX2 kernels, picked for the CPU at run
 * time).
 *
 * Primitives are made once per shape and kept in a small LRU cache shared by all threads:
 * executing one primitive from several threads at once is safe as long as each execution has
 * its own scratchpad, so the primitives use scratchpad_mode_user and every call brings its own
 * (oneDNN's default "library" scratchpad is global per creating thread and would crash when
 * another thread executes). Streams are not thread-safe, so each call makes its own (a CPU
 * stream is a small object); the engine is shared, which oneDNN allows. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_dnnl.h"

#include <omp.h>
#include <oneapi/dnnl/dnnl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>

static int check_args(int64_t m, int64_t n, int64_t k, int64_t lda, int64_t ldb, int64_t ldc,
                      bool b_nk) {
        if (m < 0 || n < 0 || k < 0 || lda < k || ldb < (b_nk ? k : n) || ldc < n)
                return -EINVAL;
        return 0;
}

/* k = 0: the product is zero. */
static void empty_product(int64_t m, int64_t n, float *c, int64_t ldc, bool accumulate) {
        if (accumulate)
                return;
        for (int64_t i = 0; i < m; i++)
                memset(c + i * ldc, 0, sizeof(float) * (size_t) n);
}

/* Row blocks of 256 and tiles of ~1024 rows with their tails over a dozen layer shapes: far
 * fewer than this; the bound only stops a pathological caller from growing it forever. */
#define CACHE_SLOTS 64

typedef struct gemm_key {
        dnnl_data_type_t type; /* of A and B; C is FP32 */
        bool b_nk;             /* B stored [n,k] (a Linear weight); else [k,n] */
        int64_t m, n, k, lda, ldb, ldc;
        float alpha;
        bool accumulate;
} gemm_key;

/* A primitive (or the reason there is none) and what executing it needs. Shared by the cache
 * and the calls running it; the last reference destroys it, so evicting never pulls a
 * primitive from under a running call. */
typedef struct gemm_prim {
        atomic_int refs;
        dnnl_status_t status;
        dnnl_primitive_t prim;
        dnnl_memory_desc_t a_md, b_md, c_md, scratch_md;
        size_t scratch_bytes;
} gemm_prim;

static struct {
        gemm_key key;
        gemm_prim *p;
        uint64_t used;
} cache[CACHE_SLOTS];
static int cache_len;
static uint64_t cache_clock;
static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;

static dnnl_engine_t engine;
static dnnl_status_t engine_status = dnnl_runtime_error;
static pthread_once_t engine_once = PTHREAD_ONCE_INIT;

static int status_to_errno(dnnl_status_t s) {
        switch (s) {
        case dnnl_success:
                return 0;
        case dnnl_unimplemented:
                return -ENOTSUP;
        case dnnl_out_of_memory:
                return -ENOMEM;
        default:
                return -EIO;
        }
}

static void engine_create(void) {
        engine_status = dnnl_engine_create(&engine, dnnl_cpu, 0);
}

int cpu_dnnl_init(void) {
        pthread_once(&engine_once, engine_create);
        return engine_status == dnnl_success ? 0 : -EIO;
}

static bool key_equal(const gemm_key *x, const gemm_key *y) {
        return x->type == y->type && x->b_nk == y->b_nk && x->m == y->m && x->n == y->n &&
               x->k == y->k && x->lda == y->lda && x->ldb == y->ldb && x->ldc == y->ldc &&
               x->alpha == y->alpha && x->accumulate == y->accumulate;
}

/* A row-major [rows, cols] matrix with row stride ld; transposed, the same bytes read as
 * [cols, rows]: how B[n,k] becomes the [k,n] weights matmul expects. */
static dnnl_status_t matrix_md(dnnl_memory_desc_t *md, int64_t rows, int64_t cols, int64_t ld,
                               dnnl_data_type_t dt, bool transposed) {
        dnnl_dims_t dims = { rows, cols }, strides = { ld, 1 };
        if (transposed) {
                dims[0] = cols, dims[1] = rows;
                strides[0] = 1, strides[1] = ld;
        }
        return dnnl_memory_desc_init_by_strides(md, 2, dims, dt, strides);
}

static dnnl_status_t make_attr(dnnl_primitive_attr_t *attr, float alpha, bool accumulate) {
        dnnl_status_t s = dnnl_primitive_attr_create(attr);
        if (s == dnnl_success)
                s = dnnl_primitive_attr_set_scratchpad_mode(*attr, dnnl_scratchpad_mode_user);
        /* alpha scales the product, before any sum: dst = alpha·A·B (+ dst) */
        if (s == dnnl_success && alpha != 1.0f)
                s = dnnl_primitive_attr_set_output_scales(*attr, 1, 0, &alpha);
        if (s != dnnl_success || !accumulate)
                return s;
        /* beta = 1: dst += A·B, read from dst before it is written */
        dnnl_post_ops_t po;
        s = dnnl_post_ops_create(&po);
        if (s != dnnl_success)
                return s;
        s = dnnl_post_ops_append_sum(po, 1.0f);
        if (s == dnnl_success)
                s = dnnl_primitive_attr_set_post_ops(*attr, po);
        dnnl_post_ops_destroy(po);
        return s;
}

/* oneDNN sizes its blocking and its split of the work by omp_get_max_threads(): at creation
 * (brgemm) or at execution (gemm:jit, which takes strided operands). Both run under this
 * override, so that a call uses the calling thread only, outside a parallel region as well as
 * inside one, and the summation order, hence the result, never depends on the caller's thread
 * count. (It drops a nested list in OMP_NUM_THREADS for this task until restored.) */
static int one_thread_begin(void) {
        int threads = omp_get_max_threads();
        omp_set_num_threads(1);
        return threads;
}

static void one_thread_end(int threads) {
        omp_set_num_threads(threads);
}

static dnnl_status_t matmul_pd(dnnl_primitive_desc_t *pd, gemm_prim *g, const gemm_key *key) {
        dnnl_status_t s = matrix_md(&g->a_md, key->m, key->k, key->lda, key->type, false);
        if (s == dnnl_success && key->b_nk)
                s = matrix_md(&g->b_md, key->n, key->k, key->ldb, key->type, true);
        else if (s == dnnl_success)
                s = matrix_md(&g->b_md, key->k, key->n, key->ldb, key->type, false);
        if (s == dnnl_success)
                s = matrix_md(&g->c_md, key->m, key->n, key->ldc, dnnl_f32, false);
        dnnl_matmul_desc_t desc;
        if (s == dnnl_success)
                s = dnnl_matmul_desc_init(&desc, &g->a_md, &g->b_md, NULL, &g->c_md);
        dnnl_primitive_attr_t attr = NULL;
        if (s == dnnl_success)
                s = make_attr(&attr, key->alpha, key->accumulate);
        if (s == dnnl_success) {
                int threads = one_thread_begin();
                s = dnnl_primitive_desc_create(pd, &desc, attr, engine, NULL);
                one_thread_end(threads);
        }
        dnnl_primitive_attr_destroy(attr);
        return s;
}

static dnnl_status_t prim_create(gemm_prim *g, const gemm_key *key) {
        dnnl_primitive_desc_t pd;
        dnnl_status_t s = matmul_pd(&pd, g, key);
        if (s != dnnl_success)
                return s;
        const dnnl_memory_desc_t *smd =
                dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
        if (smd) {
                g->scratch_md = *smd;
                g->scratch_bytes = dnnl_memory_desc_get_size(smd);
        }
        s = dnnl_primitive_create(&g->prim, pd);
        dnnl_primitive_desc_destroy(pd);
        return s;
}

/* A new primitive holding one reference; its status says whether creation worked (failures
 * are kept too, so that a shape oneDNN cannot do is not retried on every call). */
static gemm_prim *prim_new(const gemm_key *key) {
        gemm_prim *g = calloc(1, sizeof(*g));
        if (!g)
                return NULL;
        atomic_init(&g->refs, 1);
        g->status = prim_create(g, key);
        if (g->status != dnnl_success && g->prim) {
                dnnl_primitive_destroy(g->prim);
                g->prim = NULL;
        }
        return g;
}

static void prim_unref(gemm_prim *g) {
        if (!g || atomic_fetch_sub_explicit(&g->refs, 1, memory_order_acq_rel) != 1)
                return;
        if (g->prim)
                dnnl_primitive_destroy(g->prim);
        free(g);
}

static int lru_slot(void) {
        int slot = 0;
        for (int i = 1; i < cache_len; i++)
                if (cache[i].used < cache[slot].used)
                        slot = i;
        return slot;
}

/* Into a free slot, or that of the least recently used entry when the cache is full. */
static void cache_insert(const gemm_key *key, gemm_prim *g) {
        int slot;
        if (cache_len < CACHE_SLOTS) {
                slot = cache_len++;
        } else {
                slot = lru_slot();
                prim_unref(cache[slot].p);
        }
        atomic_fetch_add_explicit(&g->refs, 1, memory_order_relaxed);
        cache[slot].key = *key;
        cache[slot].p = g;
        cache[slot].used = ++cache_clock;
}

/* The primitive for key with a reference for the caller, made on first use; NULL without
 * memory. Creation happens under the lock: it is rare, and two threads then never JIT the
 * same kernels twice. */
static gemm_prim *cache_get(const gemm_key *key) {
        gemm_prim *g = NULL;
        pthread_mutex_lock(&cache_lock);
        for (int i = 0; i < cache_len && !g; i++)
                if (key_equal(&cache[i].key, key)) {
                        g = cache[i].p;
                        cache[i].used = ++cache_clock;
                        atomic_fetch_add_explicit(&g->refs, 1, memory_order_relaxed);
                }
        if (!g) {
                g = prim_new(key);
                if (g)
                        cache_insert(key, g);
        }
        pthread_mutex_unlock(&cache_lock);
        return g;
}

/* The memory objects of one execution, in the order of their argument tags. */
enum { MEM_A, MEM_B, MEM_C, MEM_SCRATCH, MEM_COUNT };

static dnnl_status_t execute(const gemm_prim *g, const void *a, const void *b, float *c,
                             void *scratch) {
        static const int tags[MEM_COUNT] = { DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DST,
                                             DNNL_ARG_SCRATCHPAD };
        /* oneDNN takes non-const handles; it only reads A and B. */
        const dnnl_memory_desc_t *mds[MEM_COUNT] = { &g->a_md, &g->b_md, &g->c_md, &g->scratch_md };
        void *ptrs[MEM_COUNT] = { (void *) a, (void *) b, c, scratch };
        int nargs = scratch ? MEM_COUNT : MEM_SCRATCH;
        dnnl_memory_t mem[MEM_COUNT] = { 0 };
        dnnl_exec_arg_t args[MEM_COUNT];
        dnnl_stream_t stream = NULL;
        dnnl_status_t s = dnnl_stream_create(&stream, engine, dnnl_stream_default_flags);
        for (int i = 0; i < nargs && s == dnnl_success; i++) {
                s = dnnl_memory_create(&mem[i], mds[i], engine, ptrs[i]);
                args[i] = (dnnl_exec_arg_t) { tags[i], mem[i] };
        }
        if (s == dnnl_success) {
                int threads = one_thread_begin();
                s = dnnl_primitive_execute(g->prim, stream, nargs, args);
                if (s == dnnl_success)
                        s = dnnl_stream_wait(stream);
                one_thread_end(threads);
        }
        for (int i = 0; i < nargs; i++)
                dnnl_memory_destroy(mem[i]);
        dnnl_stream_destroy(stream);
        return s;
}

static int run(const gemm_prim *g, const void *a, const void *b, float *c) {
        if (g->status != dnnl_success)
                return status_to_errno(g->status);
        void *scratch = NULL;
        if (g->scratch_bytes) {
                /* aligned_alloc wants a multiple of the alignment */
                scratch = aligned_alloc(64, (g->scratch_bytes + 63) & ~(size_t) 63);
                if (!scratch)
                        return -ENOMEM;
        }
        int r = status_to_errno(execute(g, a, b, c, scratch));
        free(scratch);
        return r;
}

static int gemm(const gemm_key *key, const void *a, const void *b, float *c) {
        int r = check_args(key->m, key->n, key->k, key->lda, key->ldb, key->ldc, key->b_nk);
        if (r < 0 || key->m == 0 || key->n == 0)
                return r;
        if (key->k == 0) {
                empty_product(key->m, key->n, c, key->ldc, key->accumulate);
                return 0;
        }
        r = cpu_dnnl_init();
        if (r < 0)
                return r;
        /* A single row's stride means nothing, and oneDNN 2.6 treats two such products as one
         * primitive in its own cache while its kernels still differ: the second one crashed
         * (a 1-row product with ldc 96, then with ldc 101, on 2 threads). One row, dense. */
        gemm_key k1 = *key;
        if (k1.m == 1)
                k1.lda = k1.k, k1.ldc = k1.n;
        if (k1.b_nk ? k1.n == 1 : k1.k == 1)
                k1.ldb = k1.b_nk ? k1.k : k1.n;
        key = &k1;
        gemm_prim *g = cache_get(key);
        if (!g)
                return -ENOMEM;
        r = run(g, a, b, c);
        prim_unref(g);
        return r;
}

int cpu_dnnl_gemm_bf16_nt(int64_t m, int64_t n, int64_t k, const uint16_t *a, int64_t lda,
                          const uint16_t *b, int64_t ldb, float *c, int64_t ldc, bool accumulate) {
        gemm_key key = { dnnl_bf16, true, m, n, k, lda, ldb, ldc, 1.0f, accumulate };
        return gemm(&key, a, b, c);
}

int cpu_dnnl_sgemm(bool b_nk, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                   int64_t lda, const float *b, int64_t ldb, float *c, int64_t ldc,
                   bool accumulate) {
        gemm_key key = { dnnl_f32, b_nk, m, n, k, lda, ldb, ldc, alpha, accumulate };
        return gemm(&key, a, b, c);
}

static char isa_name[64];
static pthread_once_t isa_once = PTHREAD_ONCE_INIT;

static void isa_probe(void) {
        if (cpu_dnnl_init() < 0)
                return;
        gemm_key key = { dnnl_bf16, true, 1024, 512, 512, 512, 512, 512, 1.0f, false };
        gemm_prim g = { 0 };
        dnnl_primitive_desc_t pd;
        if (matmul_pd(&pd, &g, &key) != dnnl_success)
                return;
        const char *name = NULL;
        if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &name) == dnnl_success &&
            name)
                snprintf(isa_name, sizeof(isa_name), "%s", name);
        dnnl_primitive_desc_destroy(pd);
}

const char *cpu_gemm_library(void) {
        return "oneDNN";
}

const char *cpu_dnnl_isa(void) {
        pthread_once(&isa_once, isa_probe);
        return isa_name[0] ? isa_name : NULL;
}
