/* SPDX-License-Identifier: MIT */
/* The safetensors parser (safetensors.h) on untrusted bytes, both ways it is reached: from a
 * buffer (st_open_buffer) with every tensor then converted as the engine converts it, and as
 * a checkpoint (p3_weights_load: st_open's mmap, then the key and shape checks) against the
 * tiny test configuration, tests/data/tiny_config.json, whose path meson passes in. */
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "fuzz-util.h"
#include "weights.h"

#ifndef FUZZ_TINY_CONFIG
#error "FUZZ_TINY_CONFIG must name tests/data/tiny_config.json"
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void convert_all(const st_file *f) {
        for (size_t i = 0; i < f->n_tensors; i++) {
                const st_tensor *t = &f->tensors[i];
                if (t->numel > (1 << 20))
                        continue; /* the parser's bound is the file size; keep runs fast */
                void *dst = malloc(sizeof(int64_t) * (size_t) (t->numel + 1));
                if (!dst)
                        continue;
                if (st_to_f32(t, dst) < 0 && st_to_i64(t, dst) < 0 && st_to_i32(t, dst) < 0)
                        abort(); /* every dtype converts one way or another */
                free(dst);
                if (st_find(f, t->name) == NULL)
                        abort();
        }
        for (size_t i = 0; i < f->n_meta; i++)
                if (st_meta(f, f->meta_keys[i]) == NULL)
                        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static p3_config cfg;
        static int have_cfg = -1;
        if (have_cfg < 0) {
                p3_err err = {};
                have_cfg = p3_config_load(FUZZ_TINY_CONFIG, &cfg, &err) >= 0;
                if (!have_cfg)
                        abort();
        }

        p3_err err = {};
        st_file *f = NULL;
        if (st_open_buffer(data, size, "fuzz", &f, &err) >= 0) {
                convert_all(f);
                st_close(f);
        } else if (!err.msg[0])
                abort();

        int fd = fuzz_memfd(data, size);
        if (fd < 0)
                return 0;
        char path[64];
        fuzz_fd_path(fd, path, sizeof(path));
        p3_weights *w = NULL;
        err = (p3_err) {};
        if (p3_weights_load(path, &cfg, &w, &err) >= 0) {
                for (size_t i = 0; i < w->n; i++)
                        if (p3_weights_get(w, w->specs[i].name) != w->data[i])
                                abort();
                p3_weights_free(w);
        } else if (!err.msg[0])
                abort();
        close(fd);
        return 0;
}
