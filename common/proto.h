/*
 * proto - the taskwatch wire protocol (docs/protocol.md): frame encoding for
 * the agent and the collector, and a strict decoder for everything that
 * arrives from outside. The decoder never reads past the bytes it is given,
 * never allocates, and rejects anything that is not exactly well formed.
 */
#ifndef TW_PROTO_H
#define TW_PROTO_H

#include <stddef.h>
#include <stdint.h>

#define PROTO_VERSION 1
#define PROTO_MAGIC 0x31505754u
#define PROTO_FRAME_MAX (1u << 20)
#define PROTO_HEADER_SIZE 6 /* u32 length + u16 type */
#define PROTO_INSTANCE_SIZE 16
#define PROTO_SHORT_MAX 4096u   /* strings other than detail */
#define PROTO_DETAIL_MAX 65536u /* FAIL detail */
#define PROTO_IDENT_MAX 256u    /* HELLO service, host, token */
#define PROTO_LINK_MAX 256u     /* LINK traceparent */

enum proto_type {
  PROTO_HELLO = 100,
  PROTO_GOODBYE = 101,
  PROTO_EVENTS = 200,
  PROTO_WELCOME = 300,
  PROTO_ACK = 301,
  PROTO_ERROR = 302
};

enum proto_kind {
  PROTO_EV_STRING = 1,
  PROTO_EV_BATCH = 2,
  PROTO_EV_ENQUEUE = 3,
  PROTO_EV_START = 4,
  PROTO_EV_FINISH = 5,
  PROTO_EV_FAIL = 6,
  PROTO_EV_SKIP = 7,
  PROTO_EV_DROP = 8,
  PROTO_EV_HEALTH = 9,
  PROTO_EV_LINK = 10 /* an optional batch attribute: its request's trace */
};

/* Decoder results (besides 0). Each has a fixed reason text. */
enum proto_result {
  PROTO_NEED_MORE = 1,     /* frame_next: the frame is not complete yet */
  PROTO_E_OVERSIZED = -1,  /* length above the limit */
  PROTO_E_UNDERSIZED = -2, /* length below 2 */
  PROTO_E_TRUNCATED = -3,  /* payload ends inside a field */
  PROTO_E_TRAILING = -4,   /* payload has bytes left over */
  PROTO_E_MAGIC = -5,      /* HELLO magic wrong */
  PROTO_E_VERSION = -6,    /* unsupported protocol version */
  PROTO_E_KIND = -7,       /* unknown event kind */
  PROTO_E_FIELD = -8,      /* a field value out of range */
  PROTO_E_TYPE = -9        /* unknown or unexpected message type */
};

/* Reason text for a proto_result code. Static storage. */
const char *proto_strerror(int result);

/* A string inside a received buffer: not NUL-terminated, may hold any bytes. */
typedef struct proto_str {
  const char *ptr;
  uint32_t len;
} proto_str;

typedef struct proto_hello {
  uint16_t version;
  uint8_t instance[PROTO_INSTANCE_SIZE];
  uint32_t pid;
  int64_t started_at_ns;
  proto_str service;
  proto_str host;
  proto_str token;
} proto_hello;

typedef struct proto_welcome {
  uint16_t version;
  uint64_t next_seq;
  uint32_t max_frame;
} proto_welcome;

/* One decoded event; which fields are meaningful depends on kind. Strings
 * point into the frame they were decoded from. */
typedef struct proto_event {
  uint8_t kind;
  uint8_t mode;      /* ENQUEUE */
  uint32_t position; /* ENQUEUE */
  uint32_t string;   /* STRING: id; BATCH: label id; ENQUEUE: name id */
  int64_t time_ns;
  uint64_t task;     /* ENQUEUE START FINISH FAIL SKIP DROP */
  uint64_t batch;    /* BATCH ENQUEUE LINK */
  uint64_t other;    /* ENQUEUE/START: thread; SKIP: cause; HEALTH: dropped */
  uint64_t other2;   /* HEALTH: reconnects */
  proto_str text;    /* STRING: text; FAIL: error_type; DROP: reason;
                        LINK: traceparent */
  proto_str message; /* FAIL */
  proto_str detail;  /* FAIL */
} proto_event;

/* A frame located in a receive buffer. */
typedef struct proto_frame {
  uint16_t type;
  const uint8_t *payload;
  size_t payload_len;
  size_t frame_len; /* header + payload: bytes to consume */
} proto_frame;

/*
 * Looks at the start of buf. Returns 0 and fills *out when a whole frame is
 * there; PROTO_NEED_MORE when more bytes are needed (never with more than
 * PROTO_HEADER_SIZE + max_frame bytes outstanding); a negative proto_result
 * when the announced length is out of range. max_frame 0 means
 * PROTO_FRAME_MAX. The type is not checked here.
 */
int proto_frame_next(const uint8_t *buf, size_t len, uint32_t max_frame,
                     proto_frame *out);

int proto_decode_hello(const uint8_t *p, size_t n, proto_hello *out);
int proto_decode_welcome(const uint8_t *p, size_t n, proto_welcome *out);
int proto_decode_u64(const uint8_t *p, size_t n,
                     uint64_t *out); /* ACK GOODBYE */
int proto_decode_error(const uint8_t *p, size_t n, proto_str *reason);

/* Iterates the events of an EVENTS payload. */
typedef struct proto_events {
  const uint8_t *p;
  const uint8_t *end;
  uint64_t first_seq;
  uint32_t count;
  uint32_t index; /* events returned so far */
} proto_events;

/* Validates the EVENTS header. Returns 0 or a negative proto_result. */
int proto_events_begin(proto_events *it, const uint8_t *p, size_t n);
/* Returns 0 with *ev filled (its sequence number is first_seq + index - 1
 * after the call); 1 when all `count` events were read and the payload is
 * exactly consumed; or a negative proto_result. */
int proto_events_next(proto_events *it, proto_event *ev);

/*
 * Encoding. A growable buffer; on allocation failure the buffer is marked
 * failed, further writes are ignored, and proto_buf_failed() tells. The
 * agent pre-sizes its buffers so that failure means "drop and count".
 */
typedef struct proto_buf {
  uint8_t *data;
  size_t len;
  size_t cap;
  int failed;
  size_t frame_start; /* offset of the open frame's header */
  size_t count_at;    /* EVENTS: offset of the count field, 0 if none */
  uint32_t count;
} proto_buf;

void proto_buf_init(proto_buf *b);
void proto_buf_fini(proto_buf *b);
void proto_buf_reset(proto_buf *b); /* len 0, keeps memory */
int proto_buf_reserve(proto_buf *b, size_t extra);
static inline int proto_buf_failed(const proto_buf *b) {
  return b->failed;
}

/* Whole control frames. */
void proto_put_hello(proto_buf *b, const proto_hello *h);
void proto_put_welcome(proto_buf *b, const proto_welcome *w);
void proto_put_ack(proto_buf *b, uint64_t next_seq);
void proto_put_goodbye(proto_buf *b, uint64_t last_seq);
void proto_put_error(proto_buf *b, const char *reason);

/* An EVENTS frame: begin, put events, end. */
void proto_events_open(proto_buf *b, uint64_t first_seq);
void proto_put_event(proto_buf *b, const proto_event *ev);
void proto_events_close(proto_buf *b);

/* Encoded size of one event, for budgeting. */
size_t proto_event_size(const proto_event *ev);

#endif /* TW_PROTO_H */
