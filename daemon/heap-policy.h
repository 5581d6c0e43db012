/* SPDX-License-Identifier: MIT */
#pragma once

/* How p3samd hands the memory its jobs freed back to the kernel (glibc; elsewhere no-ops). */
void heap_policy_setup(void);
void heap_give_back(void);
