/* SPDX-License-Identifier: MIT */
/* The whole pipeline, full-size model with synthetic weights, on a real mesh: per-stage
 * seconds (post-processing included) and peak memory. Prints figures; asserts nothing about
 * time. Argument: a mesh (default: the Cesium milk truck; without assimp, in the engine-only
 * build scripts/gpu-check.sh runs on a GPU, an OFF file: default Wuson.off).
 * P3_BENCH_BACKEND=cuda (a GPU through the self-test, under GpuMemoryMax's default 1G; the
 * CPU by default), P3_BENCH_PRECISION (default: fp32 on the CPU, fp16 on a GPU),
 * P3_BENCH_POINTS and P3_BENCH_PROMPTS (default 20,000 and 32; upstream's 100000 and 400 are
 * the whole default-quality job) change the run. The prompt batch is the engine's (auto). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "mesh-off.h"
#include "pipeline.h"
#ifdef P3_HAVE_ASSIMP
#include "mesh_import.h"
#endif
#include "test-util.h"
#include "omp-env.h"

static double vm_hwm_mb(void) {
        FILE *f = fopen("/proc/self/status", "re");
        char line[256];
        double mb = 0;
        while (f && fgets(line, sizeof(line), f)) {
                unsigned long long kb;
                if (sscanf(line, "VmHWM: %llu kB", &kb) == 1)
                        mb = kb / 1024.0;
        }
        if (f)
                fclose(f);
        return mb;
}

int main(int argc, char **argv) {
        p3_omp_env_setup(argv);
#ifdef P3_HAVE_ASSIMP
        _cleanup_free_ char *dflt = test_data_path("meshes/CesiumMilkTruck.glb");
#else
        _cleanup_free_ char *dflt = test_data_path("meshes/Wuson.off");
#endif
        const char *path = argc > 1 ? argv[1] : dflt;
        p3_config cfg;
        p3_err err = {};
        p3_config_default(&cfg);
        _cleanup_(p3_weights_freep) p3_weights *w = NULL;
        CHECK_OK(p3_weights_synth(&cfg, &w, &err));
        const char *pr = getenv("P3_BENCH_PRECISION"), *np = getenv("P3_BENCH_POINTS"),
                   *nk = getenv("P3_BENCH_PROMPTS");
        const char *bk = getenv("P3_BENCH_BACKEND");
        bool cuda = bk && strcmp(bk, "cuda") == 0;
        p3_model_params mp = { .backend = cuda ? P3_BACKEND_CUDA : P3_BACKEND_CPU,
                               .memory_max = cuda ? (size_t) 1 << 30 : 0 };
        if (cuda)
                mp.precision = P3_PRECISION_FP16; /* the service's precision on a GPU */
        CHECK(!pr || p3_precision_from_string(pr, &mp.precision) >= 0);
        _cleanup_(p3_model_freep) p3_model *m = NULL;
        double t0 = test_now();
        CHECK_OK(p3_model_open(w, &mp, &m, &err));
        double load = test_now() - t0;
        if (cuda && !p3_model_on_gpu(m)) {
                fprintf(stderr, "bench-pipeline: not on the GPU: %s\n",
                        p3_model_fallback_reason(m));
                return EXIT_FAILURE;
        }
        p3_backend *be = p3_model_backend(m);
        if (p3_model_weights_copied(m))
                p3_weights_free(TAKE_PTR(w)); /* only the backend's half-precision copy stays */

        p3_mesh mesh = {};
#ifdef P3_HAVE_ASSIMP
        p3_mesh_limits lim;
        p3_mesh_limits_default(&lim);
        CHECK_OK(p3_mesh_import_file(path, NULL, &lim, &mesh, &err));
#else
        CHECK_OK(test_mesh_read_off(path, &mesh, &err));
#endif
        p3_pipeline_params p;
        p3_pipeline_params_cpu(&p);
        p.points = np ? atoll(np) : 20000;
        p.prompts = nk ? atoi(nk) : 32;
        p3_segment_result res = {};
        int r = p3_pipeline_segment(m, &mesh, &p, NULL, &res, &err);
        if (r < 0) {
                fprintf(stderr, "segment: %s\n", p3_err_msg(&err, r));
                return EXIT_FAILURE;
        }
        printf("pipeline on %s (%lld faces), %s, %s, full-size model (synthetic weights)\n",
               path, (long long) res.mesh.nf, be->device, p3_precision_to_string(be->precision));
        printf("model load %.3f s (upload%s)\n", load, cuda ? " and the CUDA self-test" : "");
        printf("%lld points, %d prompts, batch %d (auto), seed %llu, post-processing %s\n",
               (long long) p.points, p.prompts, res.prompt_batch, (unsigned long long) p.seed,
               p.post_process ? "on" : "off");
        double total = 0;
        for (int i = 0; i < res.n_timings; i++) {
                printf("  %-18s %8.3f s\n", res.timings[i].name, res.timings[i].seconds);
                total += res.timings[i].seconds;
        }
        printf("  %-18s %8.3f s\n", "total", total);
        printf("  parts %d; backend arena peak %.1f MB; process peak RSS %.0f MB (weights incl.)\n",
               res.n_parts, res.peak_device_bytes / 1048576.0, vm_hwm_mb());
        p3_segment_result_done(&res);
        p3_mesh_done(&mesh);
        p3_model_free(TAKE_PTR(m)); /* and its backend */
        return EXIT_SUCCESS;
}
