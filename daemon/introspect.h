/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdio.h>
#include <systemd/sd-bus.h>

void introspect_begin(FILE *f);
void introspect_interface(FILE *f, const char *name, const sd_bus_vtable *vtable);
void introspect_end(FILE *f);
