/*
 * messages.c - Lisp objects in and out of the core's messages.
 *
 * Copy mode: the codec encodes the object, and its bytes go to wk_send
 * while they are still on the encoder's stack (a small message is never
 * malloc'd); a message of a few conses and plain atoms is instead copied
 * as objects by the codec and goes in a box, as a shared one does.
 * Share mode: the object goes in a box (boxes.c).  Receiving turns a
 * message back into an object, frees the message, and answers a
 * WKL_RECV_* code; a copied message that does not decode is answered as
 * malformed with the decoder's complaint, never a crash (the codec treats
 * every byte as untrusted).
 */
#include "glue.h"

#include <stdlib.h>
#include <string.h>

#include "codec.h"

/* ---------------------------------------------------------------- send */

int wkl_send_share(wk_id to, cl_object obj)
{
	struct wkl_box *box = wkl_box_new(obj);
	int rc;

	if (!box)
		return -WK_ENOMEM;
	/* Size 0: a box is known by its pointer; the release hook needs no
	 * size. */
	rc = wk_send(to, box, 0, WK_MODE_SHARE);
	if (rc != 0) /* not delivered: the box is still ours */
		wkl_box_free(box);
	return rc;
}

static int send_bytes(const uint8_t *bytes, size_t len, void *to)
{
	return wk_send(*(wk_id *)to, bytes, len, WK_MODE_COPY);
}

/* The send status of a codec refusal or failure. */
static int codec_status(int rc)
{
	return rc == WKL_CODEC_UNSERIALIZABLE ? WKL_SEND_UNSERIALIZABLE
					      : WKL_SEND_CODEC_FAILED;
}

int wkl_send_copy(wk_id to, cl_object obj, cl_object *bad, cl_object *path)
{
	int sent = 0, rc;
	cl_object copy;

	/* A small message of conses and plain atoms: its fresh copy goes by
	 * reference, what decoding its bytes would have made (codec.h). */
	if (wkl_codec_copy_small(obj, &copy))
		return wkl_send_share(to, copy);
	rc = wkl_codec_encode_to(obj, send_bytes, &to, &sent, bad, path);

	return rc == WKL_CODEC_OK ? sent : codec_status(rc);
}

int wkl_send_wake(wk_id to)
{
	return wk_send(to, NULL, 0, WK_MODE_SHARE);
}

/* ---------------------------------------------------------------- receive */

static int decode(const void *data, size_t size, cl_object *out)
{
	const char *complaint = NULL;

	if (wkl_codec_decode(data, size, out, &complaint) == WKL_CODEC_OK)
		return WKL_RECV_MESSAGE;
	*out = ecl_make_simple_base_string(
		complaint ? complaint : "undecodable bytes", -1);
	return WKL_RECV_MALFORMED;
}

/*
 * Turns a received message into an object and frees the message; a
 * wake-up (a shared message with no box, wkl_send_wake) is freed and
 * answered WKL_RECV_EMPTY.  One look at the mode per message: this is
 * the path of every message received.
 */
static int unpack(wk_msg *m, cl_object *out)
{
	int rc = WKL_RECV_MESSAGE;

	if (wk_msg_mode(m) == WK_MODE_SHARE) {
		struct wkl_box *box = wk_msg_take(m);

		if (box) {
			*out = wkl_box_object(box);
			wkl_box_free(box);
		} else {
			rc = WKL_RECV_EMPTY;
		}
	} else {
		rc = decode(wk_msg_data(m), wk_msg_size(m), out);
	}
	wk_msg_free(m);
	return rc;
}

int wkl_recv_object(cl_object *out)
{
	wk_msg *m;
	int rc;

	do
		rc = (m = wk_recv()) ? unpack(m, out) : WKL_RECV_EMPTY;
	while (m && rc == WKL_RECV_EMPTY); /* a wake-up: the next one */
	return rc;
}

int wkl_recv_wait_object(int64_t timeout_ns, cl_object *out)
{
	wk_msg *m = wk_recv_wait(NULL, NULL, timeout_ns);

	return m ? unpack(m, out) : WKL_RECV_EMPTY;
}

/* ---------------------------------------------------------------- octets */

/* A fresh (unsigned-byte 8) vector of the len bytes of buf, which it frees. */
static cl_object octets_of(uint8_t *buf, size_t len)
{
	cl_object v = ecl_alloc_simple_vector(len, ecl_aet_b8);

	memcpy(v->vector.self.b8, buf, len);
	free(buf);
	return v;
}

int wkl_encode_octets(cl_object obj, cl_object *out, cl_object *path)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	int rc = wkl_codec_encode(obj, &buf, &len, out, path);

	if (rc != WKL_CODEC_OK)
		return codec_status(rc);
	*out = octets_of(buf, len);
	return WKL_SENT;
}

int wkl_etf_encode_octets(cl_object obj, cl_object *out)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	int rc = wkl_etf_encode(obj, 0, &buf, &len, out);

	if (rc == WKL_CODEC_OK)
		*out = octets_of(buf, len);
	return rc;
}

int wkl_etf_decode_octets(cl_object octets, cl_index start, cl_object *out, cl_index *end)
{
	const char *complaint = NULL;
	cl_index n = octets->vector.fillp, s = start < n ? start : n;
	size_t used = 0;
	int rc = wkl_etf_decode(octets->vector.self.b8 + s, n - s, &used, out, &complaint);

	if (rc == WKL_CODEC_OK)
		*end = s + used;
	else
		*out = ecl_make_simple_base_string(complaint ? complaint : "undecodable", -1);
	return rc;
}

int wkl_decode_octets(cl_object octets, cl_object *out)
{
	return decode(octets->vector.self.b8, octets->vector.fillp, out);
}
