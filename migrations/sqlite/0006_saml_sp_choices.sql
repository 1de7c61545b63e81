-- Per-SP choices for SAML: the algorithms of encrypted assertions (NULL: chosen from the SP's
-- metadata), which parts of a Response carry the signature, and the NameID format each
-- login was given (a LogoutRequest names it again).
ALTER TABLE saml_sps ADD COLUMN key_transport TEXT
    CHECK (key_transport IN ('rsa-oaep-mgf1p', 'rsa-oaep'));
ALTER TABLE saml_sps ADD COLUMN data_encryption TEXT
    CHECK (data_encryption IN ('aes256-gcm', 'aes128-gcm', 'aes256-cbc', 'aes128-cbc'));
ALTER TABLE saml_sps ADD COLUMN response_signing TEXT NOT NULL DEFAULT 'assertion'
    CHECK (response_signing IN ('assertion', 'response', 'both'));
ALTER TABLE saml_participants ADD COLUMN name_id_format TEXT NOT NULL
    DEFAULT 'urn:oasis:names:tc:SAML:2.0:nameid-format:persistent';
