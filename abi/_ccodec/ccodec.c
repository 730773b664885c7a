/* The hot tick of guest ABI v1 in C: what abi/_codec.py's TickCodec does per tick.
 *
 * Built on first use by reflow.abi._ccodec (python -m ziglang cc) and used only through
 * TickCodec, which keeps the pure-Python code as the reference and the fallback. Two jobs:
 *
 *   encode: input frames (and batch frames of them) straight into a writable buffer, for the
 *     inputs whose bytes are plain to write (Integer, Float, Boolean, Flow, Null and String /
 *     Bytes / Error with exact str or bytes data). Anything else -- a JSON kind, a value that
 *     does not fit, a frame that does not fit the buffer -- is not written here: the caller
 *     gets None (or the ticks written so far) and the Python encoder takes over, so every
 *     MessageError keeps its one source.
 *
 *   decode: the hot result frame (status done, exactly one Integer or Bytes output on a
 *     declared out-port) read straight from a buffer into Messages. Every byte read is
 *     untrusted (a guest wrote it): each length, count and kind byte is checked against the
 *     frame before it is used, and nothing outside [pos, end) is read. A frame that is not
 *     exactly hot is not an error here: it is handed back ((start, stop) or None) for the
 *     Python decoder, which raises the GuestOutputError it deserves.
 *
 * Same bytes and same Messages as the Python code: tests/abi/test_ccodec.py checks both
 * ways against random and mutated inputs.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

static PyObject *MessageType;  /* reflow.Message, set by init() */
static PyObject *s_type, *s_data, *s_inputs, *s_done;
static PyObject *k_names[8];  /* "Null" .. "Error": kind names of codes 0..7 */

#define MAX_PORTS 64

typedef struct {
    PyObject_HEAD
    PyObject *enc_fallback;   /* TickCodec.encode_into of the same node, bound */
    PyObject *batch_fallback; /* TickCodec._encode_batch_from, bound */
    Py_ssize_t nports;
    PyObject *port_str[MAX_PORTS];   /* declared out-ports */
    const char *port_raw[MAX_PORTS]; /* their UTF-8 (owned by the str objects) */
    Py_ssize_t port_len[MAX_PORTS];
} Codec;

static inline uint32_t rd32(const unsigned char *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static inline uint64_t rd64(const unsigned char *p) {
    return (uint64_t)rd32(p) | ((uint64_t)rd32(p + 4) << 32);
}

static inline void wr16(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}

static inline void wr32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

static inline void wr64(unsigned char *p, uint64_t v) {
    wr32(p, (uint32_t)v);
    wr32(p + 4, (uint32_t)(v >> 32));
}

static PyObject *new_message(PyObject *kind, PyObject *data) {
    /* dict.__new__(Message), then the two keys: what Message.integer() does */
    static PyObject *empty;
    if (empty == NULL && (empty = PyTuple_New(0)) == NULL) {
        Py_DECREF(data);
        return NULL;
    }
    PyObject *m = PyDict_Type.tp_new((PyTypeObject *)MessageType, empty, NULL);
    if (m == NULL || PyDict_SetItem(m, s_type, kind) < 0 || PyDict_SetItem(m, s_data, data) < 0) {
        Py_XDECREF(m);
        Py_DECREF(data);
        return NULL;
    }
    Py_DECREF(data);
    return m;
}

/* -- encoding ------------------------------------------------------------------------------ */

enum { ENC_OK = 0, ENC_NO = 1, ENC_FULL = 2, ENC_ERR = -1 };

/* Append one message at *pos (< end). ENC_NO: not one this encoder writes (the Python
 * encoder decides what it is); ENC_FULL: it does not fit; ENC_ERR: a Python error is set. */
static int put_message(PyObject *m, unsigned char *buf, Py_ssize_t *pos, Py_ssize_t end) {
    if (!(PyDict_CheckExact(m) || Py_IS_TYPE(m, (PyTypeObject *)MessageType)))
        return ENC_NO;
    PyObject *kind = PyDict_GetItemWithError(m, s_type);
    if (kind == NULL || !PyUnicode_CheckExact(kind)) {
        if (PyErr_Occurred()) PyErr_Clear();
        return ENC_NO;
    }
    Py_ssize_t klen;
    const char *k = PyUnicode_AsUTF8AndSize(kind, &klen);
    if (k == NULL) {
        PyErr_Clear();
        return ENC_NO;
    }
    Py_ssize_t p = *pos;
    int code = -1;
    if (klen == 4 && memcmp(k, "Flow", 4) == 0) code = 1;
    else if (klen == 4 && memcmp(k, "Null", 4) == 0) code = 0;
    if (code >= 0) {
        if (end - p < 1) return ENC_FULL;
        buf[p] = (unsigned char)code;
        *pos = p + 1;
        return ENC_OK;
    }
    PyObject *data = PyDict_GetItemWithError(m, s_data);
    if (data == NULL) {
        if (PyErr_Occurred()) PyErr_Clear();
        return ENC_NO;
    }
    if (klen == 7 && memcmp(k, "Integer", 7) == 0) {
        if (!PyLong_Check(data) || !(PyLong_CheckExact(data) || PyBool_Check(data))) return ENC_NO;
        int overflow = 0;
        long long v = PyLong_AsLongLongAndOverflow(data, &overflow);
        if (overflow || (v == -1 && PyErr_Occurred())) {
            PyErr_Clear();
            return ENC_NO;
        }
        if (end - p < 9) return ENC_FULL;
        buf[p] = 3;
        wr64(buf + p + 1, (uint64_t)v);
        *pos = p + 9;
        return ENC_OK;
    }
    if (klen == 5 && memcmp(k, "Float", 5) == 0) {
        if (!PyFloat_CheckExact(data)) return ENC_NO;
        double d = PyFloat_AS_DOUBLE(data);
        uint64_t bits;
        memcpy(&bits, &d, 8);
        if (end - p < 9) return ENC_FULL;
        buf[p] = 4;
        wr64(buf + p + 1, bits);
        *pos = p + 9;
        return ENC_OK;
    }
    if (klen == 7 && memcmp(k, "Boolean", 7) == 0) {
        if (!PyBool_Check(data)) return ENC_NO;
        if (end - p < 2) return ENC_FULL;
        buf[p] = 2;
        buf[p + 1] = data == Py_True;
        *pos = p + 2;
        return ENC_OK;
    }
    const char *raw;
    Py_ssize_t n;
    if (klen == 5 && memcmp(k, "Bytes", 5) == 0) {
        if (!PyBytes_CheckExact(data)) return ENC_NO;
        code = 6;
        raw = PyBytes_AS_STRING(data);
        n = PyBytes_GET_SIZE(data);
    } else if ((klen == 6 && memcmp(k, "String", 6) == 0) ||
               (klen == 5 && memcmp(k, "Error", 5) == 0)) {
        if (!PyUnicode_CheckExact(data)) return ENC_NO;
        code = klen == 6 ? 5 : 7;
        raw = PyUnicode_AsUTF8AndSize(data, &n);
        if (raw == NULL) { /* lone surrogates: the Python encoder says what */
            PyErr_Clear();
            return ENC_NO;
        }
    } else {
        return ENC_NO;
    }
    if (n > 0xFFFFFFFFLL) return ENC_NO;
    if (end - p < 5 || end - p - 5 < n) return ENC_FULL;
    buf[p] = (unsigned char)code;
    wr32(buf + p + 1, (uint32_t)n);
    memcpy(buf + p + 5, raw, (size_t)n);
    *pos = p + 5 + n;
    return ENC_OK;
}

/* One input frame (u16 count, then port + message entries) at *pos. */
static int put_frame(PyObject *inputs, unsigned char *buf, Py_ssize_t *pos, Py_ssize_t end) {
    if (!PyDict_CheckExact(inputs)) return ENC_NO;
    Py_ssize_t count = PyDict_GET_SIZE(inputs);
    if (count > 0xFFFF) return ENC_NO;
    Py_ssize_t p = *pos;
    if (end - p < 2) return ENC_FULL;
    wr16(buf + p, (uint32_t)count);
    p += 2;
    Py_ssize_t i = 0;
    PyObject *port, *msg;
    while (PyDict_Next(inputs, &i, &port, &msg)) {
        if (!PyUnicode_CheckExact(port)) return ENC_NO;
        Py_ssize_t plen;
        const char *praw = PyUnicode_AsUTF8AndSize(port, &plen);
        if (praw == NULL) {
            PyErr_Clear();
            return ENC_NO;
        }
        if (plen < 1 || plen > 255) return ENC_NO; /* the Python encoder raises */
        if (end - p < 1 + plen) return ENC_FULL;
        buf[p] = (unsigned char)plen;
        memcpy(buf + p + 1, praw, (size_t)plen);
        p += 1 + plen;
        /* the dict may not change under us: nothing below runs Python code */
        int r = put_message(msg, buf, &p, end);
        if (r != ENC_OK) return r;
    }
    *pos = p;
    return ENC_OK;
}

static int writable(PyObject *obj, Py_buffer *view, Py_ssize_t offset, Py_ssize_t capacity) {
    if (PyObject_GetBuffer(obj, view, PyBUF_WRITABLE) < 0) return -1;
    if (offset < 0 || capacity < 0 || offset > view->len || capacity > view->len - offset) {
        PyBuffer_Release(view);
        PyErr_SetString(PyExc_ValueError, "offset and capacity must lie inside the buffer");
        return -1;
    }
    return 0;
}

/* encode_into(inputs, buf, offset, capacity) -> bytes written; what this encoder does not
 * write goes to the Python encoder (TickCodec.encode_into), whose result is returned. */
static PyObject *Codec_encode_into(Codec *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "encode_into(inputs, buf, offset, capacity)");
        return NULL;
    }
    Py_ssize_t offset = PyLong_AsSsize_t(args[2]);
    Py_ssize_t capacity = PyLong_AsSsize_t(args[3]);
    if (PyErr_Occurred()) return NULL;
    Py_buffer view;
    if (writable(args[1], &view, offset, capacity) < 0) return NULL;
    Py_ssize_t pos = offset;
    int r = put_frame(args[0], (unsigned char *)view.buf, &pos, offset + capacity);
    PyBuffer_Release(&view);
    if (r == ENC_ERR) return NULL;
    if (r != ENC_OK) return PyObject_Vectorcall(self->enc_fallback, args, 4, NULL);
    return PyLong_FromSsize_t(pos - offset);
}

/* encode_batch_into(inputs_list, buf, offset, capacity) -> (ticks, bytes, full)
 *
 * Frames of the first ticks (each u32 n + frame after the 24-byte header, which is written
 * when ticks > 0), as TickCodec.encode_batch_into. From the first tick this encoder does not
 * write, or that does not fit, the Python encoder carries on (TickCodec._encode_batch_from)
 * and its result is returned. */
static PyObject *batch_into(Codec *self, PyObject *const *args, Py_ssize_t nargs, int of_ctxs) {
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "encode_batch_into(inputs, buf, offset, capacity)");
        return NULL;
    }
    if (!PyList_CheckExact(args[0])) { /* any sequence, as a list */
        PyObject *list = PySequence_List(args[0]);
        if (list == NULL) return NULL;
        PyObject *again[4] = {list, args[1], args[2], args[3]};
        PyObject *r = batch_into(self, again, 4, of_ctxs);
        Py_DECREF(list);
        return r;
    }
    Py_ssize_t offset = PyLong_AsSsize_t(args[2]);
    Py_ssize_t capacity = PyLong_AsSsize_t(args[3]);
    if (PyErr_Occurred()) return NULL;
    Py_buffer view;
    if (writable(args[1], &view, offset, capacity) < 0) return NULL;
    unsigned char *buf = (unsigned char *)view.buf;
    Py_ssize_t end = offset + capacity, pos = offset + 24, m = 0;
    Py_ssize_t total = PyList_GET_SIZE(args[0]);
    /* a tick that does not fit is the Python encoder's to judge too: whether it stops the
     * batch as full or as a MessageError depends on all of its inputs */
    for (; m < total && end - pos >= 4; m++) {
        Py_ssize_t start = pos + 4;
        Py_ssize_t at = start;
        PyObject *inputs = PyList_GET_ITEM(args[0], m);
        if (of_ctxs) {
            inputs = PyObject_GetAttr(inputs, s_inputs);
            if (inputs == NULL) {
                PyBuffer_Release(&view);
                return NULL;
            }
        }
        int r = put_frame(inputs, buf, &at, end);
        if (of_ctxs) Py_DECREF(inputs);
        if (r == ENC_ERR) {
            PyBuffer_Release(&view);
            return NULL;
        }
        if (r != ENC_OK) break;
        wr32(buf + pos, (uint32_t)(at - start));
        pos = at;
    }
    if (m == total && m) {
        wr32(buf + offset, (uint32_t)m);
        memset(buf + offset + 4, 0, 20);
    }
    PyBuffer_Release(&view);
    if (m < total) {
        PyObject *list = args[0];
        if (of_ctxs) { /* the Python encoder takes the inputs */
            list = PyList_New(total);
            if (list == NULL) return NULL;
            for (Py_ssize_t i = 0; i < total; i++) {
                PyObject *inputs = PyObject_GetAttr(PyList_GET_ITEM(args[0], i), s_inputs);
                if (inputs == NULL) {
                    Py_DECREF(list);
                    return NULL;
                }
                PyList_SET_ITEM(list, i, inputs);
            }
        } else {
            Py_INCREF(list);
        }
        PyObject *rest = Py_BuildValue("(OOOOnn)", list, args[1], args[2], args[3], m, pos);
        Py_DECREF(list);
        if (rest == NULL) return NULL;
        PyObject *r = PyObject_Call(self->batch_fallback, rest, NULL);
        Py_DECREF(rest);
        return r;
    }
    return Py_BuildValue("(nnO)", m, m ? pos - offset : (Py_ssize_t)0, Py_False);
}

static PyObject *Codec_encode_batch_into(Codec *self, PyObject *const *args, Py_ssize_t nargs) {
    return batch_into(self, args, nargs, 0);
}

/* encode_ctxs_into(ctxs, buf, offset, capacity): encode_batch_into of [c.inputs for c in ctxs] */
static PyObject *Codec_encode_ctxs_into(Codec *self, PyObject *const *args, Py_ssize_t nargs) {
    return batch_into(self, args, nargs, 1);
}

/* -- decoding (guest -> host: every byte untrusted) ------------------------------------------ */

/* The outputs {port: message} of the hot frame at b[0:n], or NULL with no error set when the
 * frame is not hot, or NULL with an error set (memory). */
static PyObject *hot(Codec *c, const unsigned char *b, Py_ssize_t n) {
    if (n < 10 || b[0] != 0 || b[1] != 1 || b[2] != 0) return NULL;
    Py_ssize_t plen = b[3];
    Py_ssize_t k = 5 + plen; /* status, count, port prefix, kind byte */
    if (k > n) return NULL;
    PyObject *port = NULL;
    for (Py_ssize_t i = 0; i < c->nports; i++) {
        if (c->port_len[i] == plen && memcmp(c->port_raw[i], b + 4, (size_t)plen) == 0) {
            port = c->port_str[i];
            break;
        }
    }
    if (port == NULL) return NULL;
    unsigned char code = b[k - 1];
    PyObject *m;
    if (code == 3) {
        if (n != k + 8) return NULL;
        PyObject *v = PyLong_FromLongLong((long long)rd64(b + k));
        if (v == NULL) return NULL;
        m = new_message(k_names[3], v);
    } else if (code == 6) {
        if (n - k < 4 || rd32(b + k) != (uint64_t)(n - k - 4)) return NULL;
        PyObject *v = PyBytes_FromStringAndSize((const char *)b + k + 4, n - k - 4);
        if (v == NULL) return NULL;
        m = new_message(k_names[6], v);
    } else {
        return NULL;
    }
    if (m == NULL) return NULL;
    PyObject *out = PyDict_New();
    if (out == NULL || PyDict_SetItem(out, port, m) < 0) {
        Py_XDECREF(out);
        Py_DECREF(m);
        return NULL;
    }
    Py_DECREF(m);
    return out;
}

static int readable(PyObject *obj, Py_buffer *view, Py_ssize_t pos, Py_ssize_t end) {
    if (PyObject_GetBuffer(obj, view, PyBUF_SIMPLE) < 0) return -1;
    if (pos < 0 || end < pos || end > view->len) {
        PyBuffer_Release(view);
        PyErr_SetString(PyExc_ValueError, "pos and end must lie inside the buffer");
        return -1;
    }
    return 0;
}

/* decode_single(view, pos, end) -> {port: message} of a hot frame, else None */
static PyObject *Codec_decode_single(Codec *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "decode_single(view, pos, end)");
        return NULL;
    }
    Py_ssize_t pos = PyLong_AsSsize_t(args[1]);
    Py_ssize_t end = PyLong_AsSsize_t(args[2]);
    if (PyErr_Occurred()) return NULL;
    Py_buffer view;
    if (readable(args[0], &view, pos, end) < 0) return NULL;
    PyObject *out = hot(self, (const unsigned char *)view.buf + pos, end - pos);
    PyBuffer_Release(&view);
    if (out == NULL && !PyErr_Occurred()) Py_RETURN_NONE;
    return out;
}

/* decode_batch(view, pos, end, count, limit) -> list, as TickCodec.decode_batch: per frame
 * (u32 n + result frame) its outputs if hot and n <= limit, else (start, stop); None for each
 * frame the results end before. */
static PyObject *Codec_decode_batch(Codec *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "decode_batch(view, pos, end, count, limit)");
        return NULL;
    }
    Py_ssize_t pos = PyLong_AsSsize_t(args[1]);
    Py_ssize_t end = PyLong_AsSsize_t(args[2]);
    Py_ssize_t count = PyLong_AsSsize_t(args[3]);
    long long limit = PyLong_AsLongLong(args[4]);
    if (PyErr_Occurred()) return NULL;
    if (count < 0) count = 0;
    Py_buffer view;
    if (readable(args[0], &view, pos, end) < 0) return NULL;
    const unsigned char *b = (const unsigned char *)view.buf;
    PyObject *out = PyList_New(count);
    if (out == NULL) goto fail;
    Py_ssize_t j = 0;
    for (; j < count; j++) {
        if (end - pos < 4 || rd32(b + pos) > (uint64_t)(end - pos - 4)) break;
        Py_ssize_t n = rd32(b + pos);
        PyObject *item = NULL;
        if (n >= 10 && (long long)n <= limit) {
            item = hot(self, b + pos + 4, n);
            if (item == NULL && PyErr_Occurred()) goto fail;
        }
        if (item == NULL) {
            item = Py_BuildValue("(nn)", pos + 4, pos + 4 + n);
            if (item == NULL) goto fail;
        }
        PyList_SET_ITEM(out, j, item);
        pos += 4 + n;
    }
    for (; j < count; j++) {
        Py_INCREF(Py_None);
        PyList_SET_ITEM(out, j, Py_None);
    }
    PyBuffer_Release(&view);
    return out;
fail:
    Py_XDECREF(out);
    PyBuffer_Release(&view);
    return NULL;
}

/* tick(inputs, view, in_ptr, in_cap, args, call, trap, out_limit)
 *
 * The single-tick path of a wasmtime node in one call: encode the input frame into linear
 * memory at in_ptr (as encode_into), put (in_ptr, n) in the i64 slots args[0] and args[2],
 * call() (the bound unchecked call: it releases the GIL), then read the result slice the
 * guest returned in args[0]. Returns
 *   {port: message}  a hot result, inside the view and within out_limit bytes;
 *   an int           the raw result: anything else, for the Python code to check and decode;
 *   a 1-tuple (e,)   the call failed: e is what call() returned (the trap is in trap);
 *   None             nothing was called: the frame needs more than in_cap bytes.
 */
static PyObject *Codec_tick(Codec *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError,
                        "tick(inputs, view, in_ptr, in_cap, args, call, trap, out_limit)");
        return NULL;
    }
    PyObject *n_obj = Codec_encode_into(self, args, 4);
    if (n_obj == NULL) return NULL;
    Py_ssize_t n = PyLong_AsSsize_t(n_obj);
    Py_DECREF(n_obj);
    if (n == -1 && PyErr_Occurred()) return NULL;
    if (n < 0) Py_RETURN_NONE;
    Py_ssize_t in_ptr = PyLong_AsSsize_t(args[2]);
    long long out_limit = PyLong_AsLongLong(args[7]);
    if (PyErr_Occurred()) return NULL;
    Py_buffer slots;
    if (PyObject_GetBuffer(args[4], &slots, PyBUF_WRITABLE) < 0) return NULL;
    if (slots.len < 24) {
        PyBuffer_Release(&slots);
        PyErr_SetString(PyExc_ValueError, "args must hold at least three i64 slots");
        return NULL;
    }
    wr64((unsigned char *)slots.buf, (uint64_t)in_ptr);
    wr64((unsigned char *)slots.buf + 16, (uint64_t)n);
    PyBuffer_Release(&slots); /* the call runs Python code (the deadline callback) */
    PyObject *e = PyObject_CallNoArgs(args[5]);
    if (e == NULL) return NULL;
    Py_buffer trap;
    if (PyObject_GetBuffer(args[6], &trap, PyBUF_SIMPLE) < 0) {
        Py_DECREF(e);
        return NULL;
    }
    int trapped = 0;
    for (Py_ssize_t i = 0; i < trap.len; i++) trapped |= ((unsigned char *)trap.buf)[i];
    PyBuffer_Release(&trap);
    if (e != Py_None || trapped) {
        PyObject *t = PyTuple_Pack(1, e);
        Py_DECREF(e);
        return t;
    }
    Py_DECREF(e);
    if (PyObject_GetBuffer(args[4], &slots, PyBUF_SIMPLE) < 0) return NULL;
    uint64_t raw = rd64((const unsigned char *)slots.buf);
    PyBuffer_Release(&slots);
    Py_ssize_t ptr = (Py_ssize_t)(raw & 0xFFFFFFFFu), ln = (Py_ssize_t)(raw >> 32);
    Py_buffer view;
    if (PyObject_GetBuffer(args[1], &view, PyBUF_SIMPLE) < 0) return NULL;
    PyObject *out = NULL;
    if ((long long)ln <= out_limit && ptr <= view.len && ln <= view.len - ptr) {
        out = hot(self, (const unsigned char *)view.buf + ptr, ln);
        if (out == NULL && PyErr_Occurred()) {
            PyBuffer_Release(&view);
            return NULL;
        }
    }
    PyBuffer_Release(&view);
    if (out != NULL) return out;
    return PyLong_FromLongLong((long long)raw); /* args[0] is a signed i64, as ctypes reads it */
}

/* deliver_batch(view, pos, end, count, limit, ctxs) -> (delivered, frames)
 *
 * decode_batch, then ctxs[j].done(frames[j]) for the leading frames that are hot: the hot
 * loop of GuestNodeActor._deliver_batch. ``delivered`` says how many were ended. */
static PyObject *Codec_deliver_batch(Codec *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "deliver_batch(view, pos, end, count, limit, ctxs)");
        return NULL;
    }
    PyObject *ctxs = PySequence_Fast(args[5], "ctxs must be a sequence");
    if (ctxs == NULL) return NULL;
    PyObject *frames = Codec_decode_batch(self, args, 5);
    if (frames == NULL) {
        Py_DECREF(ctxs);
        return NULL;
    }
    Py_ssize_t j = 0, n = PyList_GET_SIZE(frames);
    for (; j < n && j < PySequence_Fast_GET_SIZE(ctxs); j++) {
        PyObject *out = PyList_GET_ITEM(frames, j);
        if (!PyDict_CheckExact(out)) break;
        PyObject *ctx = PySequence_Fast_GET_ITEM(ctxs, j);
        Py_INCREF(ctx);
        PyObject *r = PyObject_CallMethodOneArg(ctx, s_done, out);
        Py_DECREF(ctx);
        if (r == NULL) {
            Py_DECREF(ctxs);
            Py_DECREF(frames);
            return NULL;
        }
        Py_DECREF(r);
    }
    Py_DECREF(ctxs);
    return Py_BuildValue("(nN)", j, frames);
}

/* -- the Codec type: one node's declared out-ports ------------------------------------------ */

static int Codec_traverse(Codec *self, visitproc visit, void *arg) {
    Py_VISIT(self->enc_fallback);
    Py_VISIT(self->batch_fallback);
    return 0;
}

static int Codec_clear(Codec *self) {
    Py_CLEAR(self->enc_fallback);
    Py_CLEAR(self->batch_fallback);
    return 0;
}

static void Codec_dealloc(Codec *self) {
    PyObject_GC_UnTrack(self);
    Codec_clear(self);
    for (Py_ssize_t i = 0; i < self->nports; i++) Py_DECREF(self->port_str[i]);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Codec_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    PyObject *ports, *enc, *batch;
    if (!PyArg_ParseTuple(args, "OOO", &ports, &enc, &batch)) return NULL;
    if (!PyCallable_Check(enc) || !PyCallable_Check(batch)) {
        PyErr_SetString(PyExc_TypeError, "the fallbacks must be callable");
        return NULL;
    }
    PyObject *seq = PySequence_Fast(ports, "out-ports must be a sequence of str");
    if (seq == NULL) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n > MAX_PORTS) {
        Py_DECREF(seq);
        return PyErr_Format(PyExc_ValueError, "at most %d out-ports", MAX_PORTS);
    }
    Codec *self = (Codec *)type->tp_alloc(type, 0);
    if (self == NULL) {
        Py_DECREF(seq);
        return NULL;
    }
    Py_INCREF(enc);
    self->enc_fallback = enc;
    Py_INCREF(batch);
    self->batch_fallback = batch;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *p = PySequence_Fast_GET_ITEM(seq, i);
        if (!PyUnicode_Check(p)) {
            PyErr_SetString(PyExc_TypeError, "out-ports must be str");
            goto fail;
        }
        Py_ssize_t len;
        const char *raw = PyUnicode_AsUTF8AndSize(p, &len);
        if (raw == NULL) goto fail;
        Py_INCREF(p);
        self->port_str[self->nports] = p;
        self->port_raw[self->nports] = raw;
        self->port_len[self->nports] = len;
        self->nports++;
    }
    Py_DECREF(seq);
    return (PyObject *)self;
fail:
    Py_DECREF(seq);
    Py_DECREF(self);
    return NULL;
}

static PyMethodDef Codec_methods[] = {
    {"tick", (PyCFunction)(void (*)(void))Codec_tick, METH_FASTCALL,
     "tick(inputs, view, in_ptr, in_cap, args, call, trap, out_limit): one wasmtime tick"},
    {"encode_into", (PyCFunction)(void (*)(void))Codec_encode_into, METH_FASTCALL,
     "encode_into(inputs, buf, offset, capacity) -> bytes written (see TickCodec)"},
    {"encode_batch_into", (PyCFunction)(void (*)(void))Codec_encode_batch_into, METH_FASTCALL,
     "encode_batch_into(inputs, buf, offset, capacity) -> (ticks, bytes, full)"},
    {"encode_ctxs_into", (PyCFunction)(void (*)(void))Codec_encode_ctxs_into, METH_FASTCALL,
     "encode_ctxs_into(ctxs, buf, offset, capacity): encode_batch_into of their inputs"},
    {"deliver_batch", (PyCFunction)(void (*)(void))Codec_deliver_batch, METH_FASTCALL,
     "deliver_batch(view, pos, end, count, limit, ctxs) -> (delivered, frames)"},
    {"decode_single", (PyCFunction)(void (*)(void))Codec_decode_single, METH_FASTCALL,
     "decode_single(view, pos, end) -> {port: message} of a hot result frame, or None"},
    {"decode_batch", (PyCFunction)(void (*)(void))Codec_decode_batch, METH_FASTCALL,
     "decode_batch(view, pos, end, count, limit) -> list (see TickCodec.decode_batch)"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject CodecType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "reflow_ccodec.Codec",
    .tp_basicsize = sizeof(Codec),
    .tp_dealloc = (destructor)Codec_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Codec(outports, encode_into, encode_batch_from): one node's hot tick codec",
    .tp_traverse = (traverseproc)Codec_traverse,
    .tp_clear = (inquiry)Codec_clear,
    .tp_methods = Codec_methods,
    .tp_new = Codec_new,
};

/* init(Message) -- once, before anything else */
static PyObject *init(PyObject *self, PyObject *arg) {
    if (!PyType_Check(arg) || !PyType_IsSubtype((PyTypeObject *)arg, &PyDict_Type)) {
        PyErr_SetString(PyExc_TypeError, "init(Message): a dict subclass");
        return NULL;
    }
    Py_INCREF(arg);
    Py_XSETREF(MessageType, arg);
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"init", init, METH_O, "init(Message)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "reflow_ccodec", "The hot tick codec of guest ABI v1, in C.", -1,
    module_methods,
};

PyMODINIT_FUNC PyInit_reflow_ccodec(void) {
    static const char *names[8] = {"Null",  "Flow",   "Boolean", "Integer",
                                   "Float", "String", "Bytes",   "Error"};
    s_type = PyUnicode_InternFromString("type");
    s_data = PyUnicode_InternFromString("data");
    s_inputs = PyUnicode_InternFromString("inputs");
    s_done = PyUnicode_InternFromString("done");
    if (s_type == NULL || s_data == NULL || s_inputs == NULL || s_done == NULL) return NULL;
    for (int i = 0; i < 8; i++)
        if ((k_names[i] = PyUnicode_InternFromString(names[i])) == NULL) return NULL;
    if (PyType_Ready(&CodecType) < 0) return NULL;
    PyObject *mod = PyModule_Create(&moduledef);
    if (mod == NULL) return NULL;
    Py_INCREF(&CodecType);
    if (PyModule_AddObject(mod, "Codec", (PyObject *)&CodecType) < 0) {
        Py_DECREF(&CodecType);
        Py_DECREF(mod);
        return NULL;
    }
    return mod;
}
