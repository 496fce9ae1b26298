/* Fast call stacks. libgcc's unwinder interprets the unwind tables (.eh_frame) of every frame
 * on every capture: about 70 ns a frame, three quarters of the cost of a tracked mmap+munmap.
 * Here the rule that matters for walking a frame, "the caller's frame starts at the stack
 * pointer plus N", is read once per return address from its FDE and kept in a small lock-free
 * cache; a capture is then a chain of loads. Only frames whose CFA is the stack pointer plus a
 * constant at the call site are taken (what GCC emits for code without frame pointers or
 * alloca), with the return address at CFA-8; anything else (a frame-pointer-based CFA, a signal
 * frame, a CFA expression, an opcode not known here) makes the capture fall back to libgcc's
 * unwinder, so the frames recorded are always those _Unwind_Backtrace would give. */
#define _GNU_SOURCE
#include "ww.h"

#include <dlfcn.h>
#include <string.h>

/* libgcc's layout (unwind-dw2-fde.h); only func is read here. */
struct dwarf_eh_bases {
	void *tbase; // cppcheck-suppress unusedStructMember
	void *dbase; // cppcheck-suppress unusedStructMember
	void *func;
};
extern const void *_Unwind_Find_FDE(void *pc, struct dwarf_eh_bases *bases);

/* Rules: the CFA offset from the stack pointer (8..65528, a multiple of 8), or one of these. */
enum { RULE_END = 1, RULE_SLOW = 2 };

/* Direct-mapped: slot = (return address << 16) | rule; 0 is empty. A word is read and written
 * whole, so threads never see half an entry; a collision just replaces the older one. */
#define SLOTS 8192
static uint64_t cache[SLOTS];

static size_t slot_of(uintptr_t ra)
{
	return (size_t)((ra * 0x9e3779b97f4a7c15ull) >> 51) & (SLOTS - 1);
}

void ww_unwind_flush(void)
{
	for (size_t i = 0; i < SLOTS; i++)
		__atomic_store_n(&cache[i], 0, __ATOMIC_RELAXED);
}

static uint64_t uleb(const uint8_t **p, const uint8_t *end)
{
	uint64_t v = 0;
	for (unsigned shift = 0; *p < end && shift < 64; shift += 7) {
		uint8_t b = *(*p)++;
		v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80))
			break;
	}
	return v;
}

static int64_t sleb(const uint8_t **p, const uint8_t *end)
{
	uint64_t v = 0;
	unsigned shift = 0;
	uint8_t b = 0;
	while (*p < end && shift < 64) {
		b = *(*p)++;
		v |= (uint64_t)(b & 0x7f) << shift;
		shift += 7;
		if (!(b & 0x80))
			break;
	}
	if (shift < 64 && (b & 0x40))
		v |= ~0ull << shift;
	return (int64_t)v;
}

static uint32_t rd32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, sizeof v);
	return v;
}

/* Skip a pointer in DW_EH_PE encoding enc; NULL for an encoding not known here. */
static const uint8_t *skip_encoded(const uint8_t *p, const uint8_t *end, uint8_t enc)
{
	if (enc == 0xff) /* DW_EH_PE_omit */
		return p;
	switch (enc & 0x0f) {
	case 0x00: return p + 8; /* absptr */
	case 0x01: uleb(&p, end); return p;
	case 0x02: case 0x0a: return p + 2;
	case 0x03: case 0x0b: return p + 4;
	case 0x04: case 0x0c: return p + 8;
	case 0x09: sleb(&p, end); return p;
	}
	return NULL;
}

struct cfa_state {
	uint64_t reg;
	int64_t off;
};

struct interp {
	struct cfa_state cfa, stack[8];
	int depth;
	uint64_t code_align;
	int64_t data_align;
	bool ra_undefined, ra_odd; /* the return address's rule: undefined, or not at CFA-8 */
	bool bad;
};

/* Register reg saved at CFA + factored * data_align: only the return address's place matters. */
static void saved_at(struct interp *s, uint64_t reg, int64_t factored)
{
	if (reg == 16 && factored * s->data_align != -8)
		s->ra_odd = true;
}

/* Run the CFA program [p, end) from location loc while the location is at most pc. */
static void run(struct interp *s, const uint8_t *p, const uint8_t *end, uintptr_t loc, uintptr_t pc)
{
	while (p < end && !s->bad) {
		uint8_t op = *p++, low = op & 0x3f;
		uint64_t reg, delta = 0;
		switch (op >> 6) {
		case 1: /* advance_loc */
			delta = low * s->code_align;
			goto advance;
		case 2: /* offset */
			saved_at(s, low, (int64_t)uleb(&p, end));
			continue;
		case 3: /* restore */
			continue;
		}
		switch (op) {
		case 0x00: continue; /* nop */
		case 0x02: delta = p < end ? *p * s->code_align : 0, p += 1; goto advance;
		case 0x03: {
			uint16_t d;
			memcpy(&d, p, 2);
			delta = d * s->code_align, p += 2;
			goto advance;
		}
		case 0x04: delta = rd32(p) * s->code_align, p += 4; goto advance;
		case 0x05: /* offset_extended */
			reg = uleb(&p, end);
			saved_at(s, reg, (int64_t)uleb(&p, end));
			continue;
		case 0x06: case 0x08: uleb(&p, end); continue; /* restore_extended, same_value */
		case 0x07: /* undefined */
			if (uleb(&p, end) == 16)
				s->ra_undefined = true;
			continue;
		case 0x09: /* register */
			if (uleb(&p, end) == 16)
				s->ra_odd = true;
			uleb(&p, end);
			continue;
		case 0x0a: /* remember_state */
			if (s->depth == 8) {
				s->bad = true;
				continue;
			}
			s->stack[s->depth++] = s->cfa;
			continue;
		case 0x0b: /* restore_state */
			if (s->depth == 0) {
				s->bad = true;
				continue;
			}
			s->cfa = s->stack[--s->depth];
			continue;
		case 0x0c: s->cfa.reg = uleb(&p, end), s->cfa.off = (int64_t)uleb(&p, end); continue;
		case 0x0d: s->cfa.reg = uleb(&p, end); continue;
		case 0x0e: s->cfa.off = (int64_t)uleb(&p, end); continue;
		case 0x10: case 0x16: { /* expression, val_expression: not of the CFA, skip */
			if (uleb(&p, end) == 16)
				s->ra_odd = true;
			uint64_t n = uleb(&p, end);
			p += n;
			continue;
		}
		case 0x11: /* offset_extended_sf */
			reg = uleb(&p, end);
			saved_at(s, reg, sleb(&p, end));
			continue;
		case 0x12: s->cfa.reg = uleb(&p, end), s->cfa.off = sleb(&p, end) * s->data_align; continue;
		case 0x13: s->cfa.off = sleb(&p, end) * s->data_align; continue;
		case 0x14: case 0x15: /* val_offset(_sf) */
			if (uleb(&p, end) == 16)
				s->ra_odd = true;
			if (op == 0x14)
				uleb(&p, end);
			else
				sleb(&p, end);
			continue;
		case 0x2e: uleb(&p, end); continue; /* GNU_args_size */
		default: /* set_loc, def_cfa_expression, vendor opcodes: not here */
			s->bad = true;
			continue;
		}
	advance:
		loc += delta;
		if (loc > pc)
			return;
	}
}

/* The rule for the frame whose return address is ra, from its FDE. */
static unsigned compute(uintptr_t ra)
{
	struct dwarf_eh_bases bases;
	uintptr_t pc = ra - 1; /* inside the call, as libgcc looks it up */
	const uint8_t *fde = _Unwind_Find_FDE((void *)pc, &bases);
	if (!fde)
		return RULE_END; /* libgcc ends the walk here too */
	uint32_t len = rd32(fde);
	if (len == 0 || len == 0xffffffffu)
		return RULE_SLOW;
	const uint8_t *fend = fde + 4 + len;
	const uint8_t *cie = fde + 4 - (int32_t)rd32(fde + 4);
	uint32_t clen = rd32(cie);
	if (clen == 0 || clen == 0xffffffffu)
		return RULE_SLOW;
	const uint8_t *cend = cie + 4 + clen, *p = cie + 8;
	uint8_t version = *p++;
	if (version != 1 && version != 3)
		return RULE_SLOW;
	const char *aug = (const char *)p;
	size_t alen_str = strnlen(aug, (size_t)(cend - p));
	p += alen_str + 1;
	struct interp s = {.cfa = {7, 8}};
	s.code_align = uleb(&p, cend);
	s.data_align = sleb(&p, cend);
	uint64_t ra_reg = version == 1 ? *p++ : uleb(&p, cend);
	if (ra_reg != 16)
		return RULE_SLOW;
	uint8_t fde_enc = 0;
	bool z = aug[0] == 'z';
	if (z) {
		uint64_t alen = uleb(&p, cend);
		const uint8_t *ad = p, *aend = p + alen;
		p = aend;
		for (const char *c = aug + 1; *c; c++) {
			if (*c == 'R' && ad < aend)
				fde_enc = *ad++;
			else if (*c == 'L' && ad < aend)
				ad++;
			else if (*c == 'P' && ad < aend) {
				uint8_t enc = *ad++;
				ad = skip_encoded(ad, aend, enc);
				if (!ad)
					return RULE_SLOW;
			} else {
				return RULE_SLOW; /* 'S' (a signal frame) and anything unknown */
			}
		}
	} else if (aug[0]) {
		return RULE_SLOW;
	}
	run(&s, p, cend, 0, UINTPTR_MAX); /* the CIE's initial instructions */
	const uint8_t *q = skip_encoded(fde + 8, fend, fde_enc);
	q = q ? skip_encoded(q, fend, fde_enc & 0x0f) : NULL;
	if (!q)
		return RULE_SLOW;
	if (z) {
		uint64_t alen = uleb(&q, fend);
		q += alen;
	}
	run(&s, q, fend, (uintptr_t)bases.func, pc);
	if (s.bad || s.ra_odd)
		return RULE_SLOW;
	if (s.ra_undefined)
		return RULE_END;
	if (s.cfa.reg != 7 || s.cfa.off < 8 || s.cfa.off > 65528 || (s.cfa.off & 7))
		return RULE_SLOW; /* not the stack pointer plus a constant */
	return (unsigned)s.cfa.off;
}

static unsigned rule_of(uintptr_t ra)
{
	size_t i = slot_of(ra);
	uint64_t v = __atomic_load_n(&cache[i], __ATOMIC_RELAXED);
	if (v && (v >> 16) == ra)
		return (unsigned)(v & 0xffff);
	unsigned rule = compute(ra);
	if (ra < (1ull << 47))
		__atomic_store_n(&cache[i], ((uint64_t)ra << 16) | rule, __ATOMIC_RELAXED);
	return rule;
}

int ww_unwind_fast(uintptr_t *out, int max, uintptr_t ra, uintptr_t sp, uintptr_t own_lo,
		   uintptr_t own_hi)
{
	int n = 0;
	for (int steps = 0; steps < 512 && ra; steps++) {
		if (n > 0 || ra < own_lo || ra >= own_hi) {
			out[n++] = ra - 1; /* into the call, as the slow path records it */
			if (n == max)
				return n;
		}
		unsigned rule = rule_of(ra);
		if (rule == RULE_SLOW)
			return -1;
		if (rule == RULE_END)
			break;
		sp += rule;
		ra = *(const uintptr_t *)(sp - 8);
	}
	return n;
}
