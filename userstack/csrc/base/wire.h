/* wire.h: checked views over the headers the stack reads and writes (Ethernet, IPv4, IPv6, UDP),
 * the TCP segment checked (bounds, checksum) for the TCP core to decode once (tcp/tcp_wire.h),
 * and the Internet checksum.
 *
 * Parsing takes untrusted bytes and a length and checks every bound before reading; it returns
 * a US_WIRE_* code and fills a small view struct whose pointers point into the buffer. Emitting
 * writes into a buffer the caller sized, and checks nothing (the smoltcp rule: check lengths on
 * untrusted input, never when emitting). Multi-byte fields in views are host order. */
#pragma once
#include <stddef.h>
#include <stdint.h>
#include "addr.h"

#define US_ETH_HLEN        14
#define US_VLAN_HLEN       4
#define US_IPV4_HLEN       20
#define US_IPV6_HLEN       40
#define US_UDP_HLEN        8
#define US_TCP_HLEN        20
#define US_ETH_P_IPV4      0x0800
#define US_ETH_P_IPV6      0x86DD
#define US_ETH_P_8021Q     0x8100
#define US_ETH_P_8021AD    0x88A8
#define US_IPPROTO_TCP     6
#define US_IPPROTO_UDP     17
#define US_IPV6_EXT_MAX    6

enum us_wire_result {
	US_WIRE_OK = 0,
	US_WIRE_TRUNCATED = -1,    /* shorter than a header or a length field says */
	US_WIRE_MALFORMED = -2,    /* a field is invalid (version, IHL, length smaller than header) */
	US_WIRE_BAD_CSUM = -3,
	US_WIRE_FRAGMENT = -4,     /* IPv4 MF/offset, or an IPv6 fragment header */
	US_WIRE_UNSUPPORTED = -5,  /* not IPv4/IPv6, not UDP/TCP, too many extension headers */
};

struct us_eth_view {
	const uint8_t *dst, *src;
	uint16_t type;             /* after VLAN tags */
	uint16_t hlen;             /* 14, 18 or 22 */
};

struct us_ip_view {
	uint8_t family;            /* US_AF4 / US_AF6 */
	uint8_t proto;             /* transport protocol after IPv6 extension headers */
	uint8_t ttl;
	uint8_t tos;
	uint16_t hlen;             /* IP header + extension headers */
	uint16_t payload_len;      /* transport bytes (from the IP length fields, not the frame) */
	const uint8_t *src, *dst;  /* 4 or 16 bytes, network order */
	const uint8_t *payload;
};

struct us_udp_view {
	uint16_t sport, dport;
	uint16_t len;              /* UDP length field: header + data */
	uint16_t csum;
	const uint8_t *data;
	uint16_t data_len;
};

/* A whole received frame: Ethernet, IP, and the transport header checked and checksummed. */
struct us_parsed {
	struct us_eth_view eth;
	struct us_ip_view ip;
	struct us_udp_view udp;    /* UDP only: a TCP segment is the TCP core's to parse (tcp/tcp_wire.h) */
	uint8_t csum_partial;      /* 1: the transport checksum was a local peer's partial one */
};

/* Frames from a kernel on this host (the peer of a veth, tx checksum offload on by default) carry
 * CHECKSUM_PARTIAL transport checksums: the field holds the folded pseudo-header sum, not
 * complemented, for a NIC to complete, and veth never completes it. With US_PARSE_LOCAL_PEER the
 * parser accepts exactly that value (compared first: no payload sum) and sets csum_partial; any
 * other value is fully verified. Without it every checksum is fully verified (a real NIC). */
#define US_PARSE_LOCAL_PEER 0x1

/* ---- checksum ---- */
/* One's-complement sum of len bytes added to sum (not folded); any alignment, any length. */
uint64_t us_csum_add(uint64_t sum, const void *buf, size_t len);
/* Fold to 16 bits and complement: the value for a checksum field (network order bytes). */
uint16_t us_csum_fold(uint64_t sum);
/* Pseudo-header sum (RFC 768 / RFC 8200 8.1) for proto and transport length len. */
uint64_t us_csum_pseudo(uint8_t family, const uint8_t *src, const uint8_t *dst, uint8_t proto,
			uint32_t len);
/* RFC 1624 incremental update: checksum field csum after a 16-bit field changed old -> new.
 * All three are the raw field values as stored in the packet. */
uint16_t us_csum_update16(uint16_t csum, uint16_t old, uint16_t new_);
/* 1 when the checksum field (2 bytes, as stored) holds the partial value for this pseudo-header
 * sum: what a local kernel leaves for the NIC (see US_PARSE_LOCAL_PEER). */
int us_csum_is_partial(uint64_t pseudo, const uint8_t *field);
/* Do what the NIC would have: when frame's UDP or TCP checksum is partial, write the complete
 * one. 1 if it did, 0 otherwise (not IP, not UDP/TCP, already complete, damaged headers). */
int us_csum_complete(uint8_t *frame, uint32_t len);

/* ---- parse (untrusted input) ---- */
int us_eth_parse(const uint8_t *p, uint32_t len, struct us_eth_view *v);
int us_ipv4_parse(const uint8_t *p, uint32_t len, struct us_ip_view *v);
int us_ipv6_parse(const uint8_t *p, uint32_t len, struct us_ip_view *v);
/* The transport parsers verify the checksum; flags: US_PARSE_*. *partial is set to 1 when a
 * partial checksum was accepted, else 0. */
int us_udp_parse(const struct us_ip_view *ip, uint32_t flags, struct us_udp_view *v, uint8_t *partial);
/* A TCP segment's header fits (data offset within the payload) and its checksum holds; its fields
 * are the TCP core's to read, once (tcp_parse). */
int us_tcp_check(const struct us_ip_view *ip, uint32_t flags, uint8_t *partial);
/* Ethernet -> IP -> UDP/TCP. US_WIRE_OK or the first failure. flags: US_PARSE_* (0: verify all). */
int us_frame_parse(const uint8_t *p, uint32_t len, uint32_t flags, struct us_parsed *out);

/* ---- emit (trusted: the caller sized the buffer) ---- */
void us_eth_emit(uint8_t *p, const uint8_t *dst, const uint8_t *src, uint16_t type);
/* IPv4 header without options, DF set; computes the header checksum. */
void us_ipv4_emit(uint8_t *p, const uint8_t *src, const uint8_t *dst, uint8_t proto,
		  uint16_t payload_len, uint8_t ttl, uint16_t id);
void us_ipv6_emit(uint8_t *p, const uint8_t *src, const uint8_t *dst, uint8_t proto,
		  uint16_t payload_len, uint8_t hop_limit);
/* UDP header over data already in place after it; computes the checksum. */
void us_udp_emit(uint8_t *p, uint8_t family, const uint8_t *src, const uint8_t *dst,
		 uint16_t sport, uint16_t dport, uint16_t data_len);
