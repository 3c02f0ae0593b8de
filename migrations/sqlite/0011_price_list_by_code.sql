-- A submission reads a facility's price list entries of the claim's few codes, of either kind:
-- the primary key (health_facility, kind, code, valid_from) serves that only by walking the whole
-- facility's list (1,000 entries for 5 codes in the claims benchmark).
CREATE INDEX claims_price_lists_by_code ON claims_price_lists (health_facility, code);
