/* RFC 6901 JSON Pointer escaping and parsing. */
#include "json/pointer.h"

#include <string.h>

int json_pointer_append(struct buf *path, const char *seg, size_t n)
{
    if (buf_reserve(path, 1 + 2 * n) != 0)
        return -1;
    char *d = path->data + path->len;
    *d++ = '/';
    for (size_t i = 0; i < n; i++) {
        if (seg[i] == '~') {
            *d++ = '~';
            *d++ = '0';
        } else if (seg[i] == '/') {
            *d++ = '~';
            *d++ = '1';
        } else {
            *d++ = seg[i];
        }
    }
    path->len = (size_t)(d - path->data);
    path->data[path->len] = '\0';
    return 0;
}

int json_pointer_append_index(struct buf *path, size_t i)
{
    if (buf_putc(path, '/') != 0)
        return -1;
    return buf_put_u64(path, i);
}

int json_pointer_next(const char **p, const char *end, struct buf *seg)
{
    const char *s = *p;
    seg->len = 0;
    if (s >= end)
        return 0;
    if (*s != '/')
        return -1;
    s++;
    const char *stop = memchr(s, '/', (size_t)(end - s));
    if (stop == NULL)
        stop = end;
    if (buf_reserve(seg, (size_t)(stop - s)) != 0)
        return -1;
    for (; s < stop; s++) {
        char c = *s;
        if (c == '~') {
            if (s + 1 >= stop || (s[1] != '0' && s[1] != '1'))
                return -1;
            c = s[1] == '0' ? '~' : '/';
            s++;
        }
        seg->data[seg->len++] = c;
    }
    seg->data[seg->len] = '\0';
    *p = stop;
    return 1;
}

int json_pointer_index(const char *seg, size_t n, size_t *index)
{
    if (n == 1 && seg[0] == '-')
        return 1;
    if (n == 0 || n > 10 || (n > 1 && seg[0] == '0'))
        return -1;
    size_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (seg[i] < '0' || seg[i] > '9')
            return -1;
        v = v * 10 + (size_t)(seg[i] - '0');
    }
    if (v > 0xFFFFFFF0u)
        return -1;
    *index = v;
    return 0;
}
