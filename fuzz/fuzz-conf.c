/* SPDX-License-Identifier: MIT */
/* p3samd.conf's parser (daemon-conf.c, with parse-util.c's value parsers) on untrusted bytes:
 * the input is written as the main file of a private directory and loaded as Reload would
 * load it. A success must leave a configuration that the daemon's own invariants hold for;
 * a failure must say why and leave the previous configuration as it was. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon-conf.h"
#include "fuzz-util.h"
#include "log.h"
#include "pipeline-limits.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[] = "/tmp/fuzz-conf.XXXXXX";
static char main_path[sizeof(dir) + 16];

static void check(const daemon_conf *c) {
        if (!c->model_path || !c->allow_group)
                abort();
        if (c->backend >= _DAEMON_BACKEND_MAX || c->precision >= _DAEMON_PRECISION_MAX)
                abort();
        daemon_segment_defaults d;
        for (int cpu = 0; cpu < 2; cpu++) {
                daemon_conf_segment_defaults(c, cpu, &d);
                /* prompt batch 0: auto */
                if (d.points < 1 || d.prompts < 1 || d.prompt_batch < 0 ||
                    d.prompt_batch > P3_PROMPT_BATCH_MAX)
                        abort();
                if (!(d.threshold > 0 && d.threshold <= 1))
                        abort();
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (!main_path[0]) {
                if (!mkdtemp(dir))
                        abort();
                snprintf(main_path, sizeof(main_path), "%s/p3samd.conf", dir);
                /* Unknown keys are warned about: thousands of lines a second otherwise. */
                log_set_max_level(LOG_ERR);
                /* The environment overrides are not under test here. */
                unsetenv("P3SAM_POINT_NUM");
                unsetenv("P3SAM_PROMPT_NUM");
                unsetenv("P3SAM_PROMPT_BS");
                unsetenv("P3SAM_INFERENCE_POINT_NUM");
                unsetenv("P3SAM_INFERENCE_PROMPT_NUM");
        }
        FILE *f = fopen(main_path, "we");
        if (!f)
                abort();
        if (fwrite(data, 1, size, f) != size || fclose(f) != 0)
                abort();

        daemon_conf c;
        daemon_conf_init(&c);
        char *before = strdup(c.model_path);
        p3_err err = {};
        int r = daemon_conf_load(main_path, &c, &err);
        if (r >= 0)
                check(&c);
        else if (!err.msg[0] || !before || strcmp(before, c.model_path) != 0)
                abort(); /* a failed load names the problem and changes nothing */
        free(before);
        daemon_conf_done(&c);
        return 0;
}
