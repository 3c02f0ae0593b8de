-- The reservation a code was reserved by (issue #20): the card printer's order is asked for a
-- reservation, GET /api/v1/codes/reservations/{reservation_id}/order.xlsx. Filled for the codes
-- reserved before from their history (the CodesReserved row's detail names the reservation).
ALTER TABLE codes ADD COLUMN reservation_id TEXT;
UPDATE codes c SET reservation_id = h.detail::jsonb ->> 'reservation_id'
FROM code_history h
WHERE h.code = c.code AND h.event_type = 'CodesReserved' AND c.status <> 'available';
CREATE INDEX codes_by_reservation ON codes (reservation_id, code) WHERE reservation_id IS NOT NULL;
