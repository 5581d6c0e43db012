/* SPDX-License-Identifier: MIT */
/* D-Bus introspection XML generated from our sd-bus vtables, so that `p3samd --introspect`,
 * the committed copy (tests diff it) and the man page cannot drift from the code. */
#include <stdbool.h>
#include <string.h>

#include "introspect.h"

/* Length of the first complete type of a signature, 0 if malformed. */
static size_t complete_type_len(const char *s) {
        switch (*s) {
        case 'a':
                return s[1] ? 1 + complete_type_len(s + 1) : 0;
        case '(':
        case '{': {
                char close = *s == '(' ? ')' : '}';
                size_t n = 1;
                while (s[n] && s[n] != close) {
                        size_t k = complete_type_len(s + n);
                        if (!k)
                                return 0;
                        n += k;
                }
                return s[n] ? n + 1 : 0;
        }
        case '\0':
                return 0;
        default:
                return 1;
        }
}

/* One <arg> per complete type; names come NUL-separated (SD_BUS_PARAM). */
static const char *print_args(FILE *f, const char *sig, const char *names, const char *dir,
                              const char *indent) {
        while (sig && *sig) {
                size_t n = complete_type_len(sig);
                if (!n)
                        break;
                fprintf(f, "%s<arg type=\"%.*s\"", indent, (int) n, sig);
                if (names && *names) {
                        fprintf(f, " name=\"%s\"", names);
                        names += strlen(names) + 1;
                }
                if (dir)
                        fprintf(f, " direction=\"%s\"", dir);
                fputs("/>\n", f);
                sig += n;
        }
        return names;
}

static void print_method(FILE *f, const sd_bus_vtable *v) {
        fprintf(f, "  <method name=\"%s\">\n", v->x.method.member);
        const char *names = v->x.method.names;
        names = print_args(f, v->x.method.signature, names, "in", "   ");
        print_args(f, v->x.method.result, names, "out", "   ");
        fputs("  </method>\n", f);
}

static void print_signal(FILE *f, const sd_bus_vtable *v) {
        fprintf(f, "  <signal name=\"%s\">\n", v->x.signal.member);
        print_args(f, v->x.signal.signature, v->x.signal.names, NULL, "   ");
        fputs("  </signal>\n", f);
}

static void print_property(FILE *f, const sd_bus_vtable *v) {
        bool writable = v->type == _SD_BUS_VTABLE_WRITABLE_PROPERTY;
        fprintf(f, "  <property name=\"%s\" type=\"%s\" access=\"%s\"", v->x.property.member,
                v->x.property.signature, writable ? "readwrite" : "read");
        const char *emits = v->flags & SD_BUS_VTABLE_PROPERTY_CONST          ? "const"
                            : v->flags & SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE ? NULL
                                                                             : "false";
        if (!emits) {
                fputs("/>\n", f);
                return;
        }
        fprintf(f, ">\n   <annotation name=\"org.freedesktop.DBus.Property.EmitsChangedSignal\" "
                   "value=\"%s\"/>\n  </property>\n",
                emits);
}

void introspect_interface(FILE *f, const char *name, const sd_bus_vtable *vtable) {
        fprintf(f, " <interface name=\"%s\">\n", name);
        for (const sd_bus_vtable *v = vtable; v->type != _SD_BUS_VTABLE_END; v++)
                switch (v->type) {
                case _SD_BUS_VTABLE_METHOD:
                        print_method(f, v);
                        break;
                case _SD_BUS_VTABLE_SIGNAL:
                        print_signal(f, v);
                        break;
                case _SD_BUS_VTABLE_PROPERTY:
                case _SD_BUS_VTABLE_WRITABLE_PROPERTY:
                        print_property(f, v);
                        break;
                default:
                        break;
                }
        fputs(" </interface>\n", f);
}

void introspect_begin(FILE *f) {
        fputs("<!DOCTYPE node PUBLIC \"-//freedesktop//DTD D-BUS Object Introspection 1.0//EN\"\n"
              " \"http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd\">\n<node>\n",
              f);
}

void introspect_end(FILE *f) {
        fputs("</node>\n", f);
}
