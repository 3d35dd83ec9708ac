/* tcp_wire.h: the TCP header on the wire (RFC 9293 3.1) and its options.
 *
 * tcp_parse is the checked view for untrusted bytes: it validates the data offset against the
 * length and walks the options defensively (RFC 9293 3.1, "must be prepared to handle an illegal
 * option length"). tcp_build writes a header into a buffer the caller sized (TCP_MAX_HDR) and
 * checks nothing.
 */
#pragma once
#include <stddef.h>
#include <stdint.h>

#define TCP_HLEN     20
#define TCP_MAX_HDR  60

#define TH_FIN 0x01
#define TH_SYN 0x02
#define TH_RST 0x04
#define TH_PSH 0x08
#define TH_ACK 0x10
#define TH_URG 0x20
#define TH_ECE 0x40
#define TH_CWR 0x80

#define TCPOPT_EOL       0
#define TCPOPT_NOP       1
#define TCPOPT_MSS       2   /* RFC 9293 3.7.1 */
#define TCPOPT_WS        3   /* RFC 7323 2 */
#define TCPOPT_SACK_PERM 4   /* RFC 2018 2 */
#define TCPOPT_SACK      5   /* RFC 2018 3 */
#define TCPOPT_TS        8   /* RFC 7323 3 */

#define TCP_MAX_WSCALE 14    /* RFC 7323 2.3 */
#define TCP_MAX_SACK   4

/* A parsed segment: fields in host order, options decoded. */
struct tcp_seg {
	uint16_t sport, dport;
	uint32_t seq, ack;
	uint8_t flags;
	uint16_t wnd, urp;
	const uint8_t *data;
	uint32_t len;                  /* payload bytes */
	/* options (MSS, WS and SACK-permitted only count on SYN segments) */
	uint8_t has_mss, has_ws, sack_perm, has_ts, nsack, ws;
	uint16_t mss;
	uint32_t tsval, tsecr;
	uint32_t sack[TCP_MAX_SACK][2];
};

/* 0, or -1 when the header is malformed (short, bad data offset). */
int tcp_parse(const uint8_t *p, size_t len, struct tcp_seg *out);

/* Options to write; zero fields are left out. */
struct tcp_opts {
	uint16_t mss;                  /* SYN only */
	int8_t ws;                     /* SYN only; -1 = none */
	uint8_t sack_perm, ts;         /* ts: write TSval/TSecr */
	uint8_t nsack;
	uint32_t tsval, tsecr;
	uint32_t sack[TCP_MAX_SACK][2];
};

/* Header length the options take (20 + options, padded to 4). */
size_t tcp_opts_len(const struct tcp_opts *o);
/* Writes the header (checksum 0) into buf; returns its length. */
size_t tcp_build(uint8_t *buf, uint16_t sport, uint16_t dport, uint32_t seq, uint32_t ack,
		 uint8_t flags, uint16_t wnd, const struct tcp_opts *o);
