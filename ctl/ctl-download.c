/* SPDX-License-Identifier: MIT */
/* Resumable downloads with libcurl. The partial file is the only state: its size is where
 * the next attempt continues (CURLOPT_RESUME_FROM_LARGE), so an interrupted fetch-model
 * costs nothing but the bytes still missing. */
#include "ctl-download.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "macro.h"
#include "time-util.h"

#define MIB (1024.0 * 1024.0)
/* Give up on a server that does not answer; the default (300 s) reads like a hang. */
#define CONNECT_TIMEOUT_S 20L
/* A transfer that stalls below 1 KiB/s for a minute is dead; what it got stays for a resume. */
#define LOW_SPEED_BYTES 1024L
#define LOW_SPEED_TIME_S 60L

DEFINE_TRIVIAL_CLEANUP_FUNC(CURL *, curl_easy_cleanup);
DEFINE_TRIVIAL_CLEANUP_FUNC(CURLU *, curl_url_cleanup);

static inline void curl_freep(char **p) {
        curl_free(*p);
}

/* ---- the URL ------------------------------------------------------------------------------ */

int download_url_host(const char *url, char **ret_host, p3_err *err) {
        _cleanup_(curl_url_cleanupp) CURLU *u = curl_url();
        _cleanup_(curl_freep) char *scheme = NULL;
        _cleanup_(curl_freep) char *host = NULL;

        if (!u)
                return -ENOMEM;
        if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
            curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
            curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !host[0])
                return p3_errf(err, -EINVAL, "\"%s\" is not a URL with a host.", url);
        if (strcasecmp(scheme, "http") != 0 && strcasecmp(scheme, "https") != 0)
                return p3_errf(err, -EINVAL, "\"%s\" is not an http or https URL.", url);
        if (ret_host) {
                *ret_host = strdup(host);
                if (!*ret_host)
                        return -ENOMEM;
        }
        return 0;
}

/* ---- progress ----------------------------------------------------------------------------- */

typedef struct progress_state {
        bool enabled;
        bool tty;        /* redraw one line; otherwise print a line now and then */
        uint64_t base;   /* bytes on disk before this transfer: the rate counts only new ones */
        double t0;       /* when the transfer started */
        double last;     /* when the last line was drawn */
        int last_decile; /* sparse mode: the last 10 % step printed */
        uint64_t total;  /* the last known size of the whole file, 0 if unknown */
        bool open_line;  /* a terminal line awaits its newline */
} progress_state;

static double now_s(void) {
        return (double) now_monotonic_usec() * 1e-6;
}

static void progress_start(progress_state *p, bool enabled, uint64_t base) {
        *p = (progress_state) {
                .enabled = enabled,
                .tty = isatty(STDERR_FILENO),
                .base = base,
                .t0 = now_s(),
                .last_decile = -1,
        };
        p->last = p->t0;
}

static double progress_rate(const progress_state *p, uint64_t done, double t) {
        return t > p->t0 && done > p->base ? (double) (done - p->base) / (t - p->t0) : 0.0;
}

static void progress_tty(progress_state *p, uint64_t done, uint64_t total, double rate) {
        if (total > 0)
                fprintf(stderr, "\r%3d%%  %.1f/%.1f MiB  %.1f MiB/s\033[K",
                        (int) (100.0 * (double) done / (double) total), (double) done / MIB,
                        (double) total / MIB, rate / MIB);
        else
                fprintf(stderr, "\r%.1f MiB  %.1f MiB/s\033[K", (double) done / MIB, rate / MIB);
        p->open_line = true;
}

/* Sparse lines for logs and pipes: every further 10 %, but not more than every 5 s (every
 * 30 s when the size is unknown). */
static void progress_line(progress_state *p, uint64_t done, uint64_t total, double rate, double t) {
        if (total > 0) {
                int decile = (int) (10 * done / total);
                if (decile <= p->last_decile || t - p->last < 5.0)
                        return;
                p->last_decile = decile;
                fprintf(stderr, "downloaded %.1f of %.1f MiB (%d%%), %.1f MiB/s\n",
                        (double) done / MIB, (double) total / MIB,
                        (int) (100.0 * (double) done / (double) total), rate / MIB);
        } else {
                if (t - p->last < 30.0)
                        return;
                fprintf(stderr, "downloaded %.1f MiB, %.1f MiB/s\n", (double) done / MIB, rate / MIB);
        }
        p->last = t;
}

static void progress_update(progress_state *p, uint64_t done, uint64_t total) {
        if (!p->enabled)
                return;
        double t = now_s();
        p->total = total;
        if (p->tty) {
                if (t - p->last < 0.1 && p->open_line)
                        return;
                p->last = t;
                progress_tty(p, done, total, progress_rate(p, done, t));
        } else
                progress_line(p, done, total, progress_rate(p, done, t), t);
}

static void progress_end(progress_state *p, uint64_t done, bool complete) {
        if (!p->enabled)
                return;
        double t = now_s();
        if (p->tty && p->open_line) {
                /* The final state, not the last one the 0.1 s throttle let through. */
                progress_tty(p, done, complete ? done : p->total, progress_rate(p, done, t));
                fputc('\n', stderr);
                p->open_line = false;
        } else if (!p->tty && complete && done > p->base)
                fprintf(stderr, "downloaded %.1f MiB in %.1f s (%.1f MiB/s)\n",
                        (double) (done - p->base) / MIB, t - p->t0,
                        progress_rate(p, done, t) / MIB);
}

/* ---- one transfer ------------------------------------------------------------------------- */

typedef struct transfer {
        CURL *curl;
        int fd;
        uint64_t from;      /* where this transfer started */
        uint64_t offset;    /* file offset of the next body byte */
        bool first;         /* no body byte seen yet */
        bool started_over;  /* a 200 answered our Range and the file was emptied in place */
        int error;          /* -errno of a failed write */
        progress_state progress;
} transfer;

static int pwrite_all(int fd, const char *p, size_t n, uint64_t off) {
        while (n > 0) {
                ssize_t k = pwrite(fd, p, n, (off_t) off);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += k;
                n -= (size_t) k;
                off += (uint64_t) k;
        }
        return 0;
}

/* curl itself refuses a 200 to a resume (CURLE_RANGE_ERROR, handled by the caller); should a
 * version pass such a body on, it is the whole file: start over in place. */
static int check_first_body(transfer *t) {
        long code = 0;
        t->first = false;
        (void) curl_easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &code);
        if (code != 200 || t->offset == 0)
                return 0;
        if (ftruncate(t->fd, 0) < 0)
                return -errno;
        t->offset = 0;
        t->progress.base = 0;
        t->started_over = true;
        return 0;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *userdata) {
        transfer *t = userdata;
        size_t n = size * nmemb;
        int r = t->first ? check_first_body(t) : 0;
        if (r >= 0)
                r = pwrite_all(t->fd, data, n, t->offset);
        if (r < 0) {
                t->error = r;
                return 0; /* any count but n fails the transfer with CURLE_WRITE_ERROR */
        }
        t->offset += n;
        return n;
}

static int on_progress(void *userdata, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow) {
        transfer *t = userdata;
        /* curl counts this transfer only: a resumed one starts at what was already there. */
        uint64_t base = t->started_over ? 0 : t->from;
        progress_update(&t->progress, base + (uint64_t) dlnow,
                        dltotal > 0 ? base + (uint64_t) dltotal : 0);
        return 0;
}

static int setup(CURL *c, const char *url, transfer *t, char *errbuf) {
        const bool https = strncasecmp(url, "https:", 6) == 0;
        /* Hugging Face answers with a redirect to its CDN; never let one downgrade to http. */
        const char *redirects = https ? "https" : "http,https";
        CURLcode r = CURLE_OK;

#define SET(opt, val) \
        if (r == CURLE_OK) \
        r = curl_easy_setopt(c, opt, val)
        SET(CURLOPT_URL, url);
        SET(CURLOPT_ERRORBUFFER, errbuf);
        SET(CURLOPT_NOSIGNAL, 1L);
#if LIBCURL_VERSION_NUM >= 0x075500 /* 7.85: the string forms; the bitmasks are deprecated */
        SET(CURLOPT_PROTOCOLS_STR, "http,https");
        SET(CURLOPT_REDIR_PROTOCOLS_STR, redirects);
#else
        SET(CURLOPT_PROTOCOLS, (long) (CURLPROTO_HTTP | CURLPROTO_HTTPS));
        SET(CURLOPT_REDIR_PROTOCOLS, (long) (https ? CURLPROTO_HTTPS : CURLPROTO_HTTP | CURLPROTO_HTTPS));
        (void) redirects;
#endif
        SET(CURLOPT_FOLLOWLOCATION, 1L);
        SET(CURLOPT_MAXREDIRS, 10L);
        /* HTTP errors become curl errors ("The requested URL returned error: 404"). */
        SET(CURLOPT_FAILONERROR, 1L);
        SET(CURLOPT_CONNECTTIMEOUT, CONNECT_TIMEOUT_S);
        SET(CURLOPT_LOW_SPEED_LIMIT, LOW_SPEED_BYTES);
        SET(CURLOPT_LOW_SPEED_TIME, LOW_SPEED_TIME_S);
        SET(CURLOPT_USERAGENT, "p3samctl/" P3_VERSION);
        SET(CURLOPT_RESUME_FROM_LARGE, (curl_off_t) t->from);
        SET(CURLOPT_WRITEFUNCTION, on_body);
        SET(CURLOPT_WRITEDATA, t);
        SET(CURLOPT_XFERINFOFUNCTION, on_progress);
        SET(CURLOPT_XFERINFODATA, t);
        SET(CURLOPT_NOPROGRESS, 0L);
#undef SET
        return r == CURLE_OK ? 0 : -EINVAL;
}

typedef enum transfer_end {
        TRANSFER_DONE,          /* the file now holds the whole body */
        TRANSFER_HAD_ALL,       /* nothing was missing (416, or a 200 of exactly our size) */
        TRANSFER_RANGE_IGNORED, /* the server does not resume: start over */
        TRANSFER_SIZE_CHANGED,  /* 416 with a size other than ours: the remote file changed */
} transfer_end;

/* "Content-Range: bytes * /SIZE" of a 416: the size of the remote file, 0 if absent. */
static uint64_t range_total(CURL *c) {
        struct curl_header *h = NULL;
        uint64_t total = 0;
        if (curl_easy_header(c, "Content-Range", 0, CURLH_HEADER, -1, &h) != CURLHE_OK)
                return 0;
        if (sscanf(h->value, "bytes */%" SCNu64, &total) != 1)
                return 0;
        return total;
}

static void trim_sentence(char *s) {
        size_t n = strlen(s);
        while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == ' ' || s[n - 1] == '.'))
                s[--n] = 0;
}

static int transfer_result(transfer *t, CURLcode cr, const char *host, const char *errbuf,
                           p3_err *err) {
        if (t->error < 0)
                return p3_errf(err, t->error, "Cannot write the download to disk: %s.",
                               strerror(-t->error));
        long code = 0;
        (void) curl_easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &code);
        if (cr == CURLE_RANGE_ERROR && t->from > 0)
                return TRANSFER_RANGE_IGNORED;
        /* 416 to a resume: we have every byte, or the remote file changed. curl's
         * CURLOPT_FAILONERROR is meant to let it through, but 7.88 reports it as an error. */
        if (code == 416 && t->from > 0 && (cr == CURLE_OK || cr == CURLE_HTTP_RETURNED_ERROR)) {
                uint64_t total = range_total(t->curl);
                return total == 0 || total == t->from ? TRANSFER_HAD_ALL : TRANSFER_SIZE_CHANGED;
        }
        if (cr != CURLE_OK) {
                char msg[CURL_ERROR_SIZE];
                snprintf(msg, sizeof(msg), "%s", errbuf[0] ? errbuf : curl_easy_strerror(cr));
                trim_sentence(msg);
                return p3_errf(err, -EIO, "Cannot download from %s: %s.", host, msg);
        }

        if (code != 200 && code != 206)
                return p3_errf(err, -EPROTO, "Cannot download from %s: unexpected HTTP status %ld.",
                               host, code);
        /* curl ends a resume quietly when a 200's length equals what we have. */
        if (t->from > 0 && !t->started_over && t->offset == t->from && code == 200)
                return TRANSFER_HAD_ALL;
        return TRANSFER_DONE;
}

static int transfer_once(const char *url, const char *host, int fd, uint64_t from,
                         bool show_progress, transfer *t, p3_err *err) {
        _cleanup_(curl_easy_cleanupp) CURL *c = curl_easy_init();
        char errbuf[CURL_ERROR_SIZE] = "";

        if (!c)
                return p3_errf(err, -ENOMEM, "Cannot start libcurl.");
        *t = (transfer) { .curl = c, .fd = fd, .from = from, .offset = from, .first = true };
        progress_start(&t->progress, show_progress, from);
        if (setup(c, url, t, errbuf) < 0)
                return p3_errf(err, -EINVAL, "This libcurl lacks an option fetch-model needs.");

        CURLcode cr = curl_easy_perform(c);
        progress_end(&t->progress, t->offset, cr == CURLE_OK && t->error == 0);
        int r = transfer_result(t, cr, host, errbuf, err);
        t->curl = NULL;
        return r;
}

/* ---- the download ------------------------------------------------------------------------- */

static int file_size(int fd, uint64_t *ret, p3_err *err) {
        struct stat st;
        if (fstat(fd, &st) < 0)
                return p3_errf(err, -errno, "Cannot stat the partial download: %s.", strerror(errno));
        *ret = (uint64_t) st.st_size;
        return 0;
}

static int start_over(int fd, bool show, const char *why, p3_err *err) {
        if (show)
                fprintf(stderr, "%s; starting over.\n", why);
        if (ftruncate(fd, 0) < 0)
                return p3_errf(err, -errno, "Cannot empty the partial download: %s.", strerror(errno));
        return 0;
}

static int download_loop(const char *url, const char *host, int fd, bool show,
                         download_info *info, p3_err *err) {
        /* At most one fresh start: a second time the server would only repeat itself. */
        for (int attempt = 0;; attempt++) {
                uint64_t have = 0;
                transfer t;
                int r = file_size(fd, &have, err);
                if (r < 0)
                        return r;
                if (show && have > 0)
                        fprintf(stderr, "resuming after %.1f MiB already downloaded\n",
                                (double) have / MIB);

                r = transfer_once(url, host, fd, have, show, &t, err);
                if (r < 0)
                        return r;
                if (r == TRANSFER_RANGE_IGNORED || r == TRANSFER_SIZE_CHANGED) {
                        if (attempt > 0)
                                return p3_errf(err, -EPROTO, "Cannot download from %s: the server "
                                               "keeps refusing the request.", host);
                        r = start_over(fd, show, r == TRANSFER_RANGE_IGNORED
                                       ? "the server does not resume downloads"
                                       : "the file on the server changed size", err);
                        if (r < 0)
                                return r;
                        info->restarted = true;
                        continue;
                }
                info->was_complete = r == TRANSFER_HAD_ALL;
                info->restarted = info->restarted || t.started_over;
                info->resumed_from = r == TRANSFER_DONE && !t.started_over ? have : 0;
                return file_size(fd, &info->size, err);
        }
}

int download_resume(const char *url, int fd, bool show_progress, download_info *info,
                    p3_err *err) {
        _cleanup_free_ char *host = NULL;
        int r = download_url_host(url, &host, err);
        if (r < 0)
                return r;

        *info = (download_info) {};
        CURLcode cr = curl_global_init(CURL_GLOBAL_DEFAULT);
        if (cr != CURLE_OK)
                return p3_errf(err, -ENOMEM, "Cannot initialize libcurl: %s.",
                               curl_easy_strerror(cr));
        r = download_loop(url, host, fd, show_progress, info, err);
        curl_global_cleanup();
        return r;
}
