//! Self-tests of the push stand-ins (support/standins).
