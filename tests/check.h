/* SPDX-License-Identifier: MIT */
/* The tests' hard checks, on their own for the tests that link no engine (test-util.h brings
 * it): abort the test with the file, the line and the condition. */
#pragma once

#include <stdio.h>
#include <stdlib.h>

/* Abort the test with a message when cond is false. */
#define CHECK(cond)                                                                            \
        do {                                                                                   \
                if (!(cond)) {                                                                 \
                        fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
                        exit(EXIT_FAILURE);                                                    \
                }                                                                              \
        } while (0)
#define CHECK_OK(r)                                                                            \
        do {                                                                                   \
                int _r = (r);                                                                  \
                if (_r < 0) {                                                                  \
                        fprintf(stderr, "%s:%d: %s failed: %d\n", __FILE__, __LINE__, #r, _r);  \
                        exit(EXIT_FAILURE);                                                    \
                }                                                                              \
        } while (0)
