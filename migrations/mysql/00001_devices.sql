-- Device registry. Only SQL accepted by both MySQL 8 and MariaDB 10.11.

-- +goose Up
CREATE TABLE device_types (
    code                VARCHAR(16)  NOT NULL,
    metric              VARCHAR(32)  NOT NULL,
    unit                VARCHAR(16)  NOT NULL,
    valid_min           DOUBLE       NOT NULL,
    valid_max           DOUBLE       NOT NULL,
    max_rate_per_min    DOUBLE       NOT NULL,
    expected_interval_s INT          NOT NULL,
    updated_at          DATETIME(6)  NOT NULL,
    PRIMARY KEY (code),
    CONSTRAINT device_types_range_chk CHECK (valid_min < valid_max),
    CONSTRAINT device_types_interval_chk CHECK (expected_interval_s > 0)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE devices (
    device_id    VARCHAR(32) NOT NULL,
    type_code    VARCHAR(16) NOT NULL,
    location_id  VARCHAR(32) NOT NULL,
    model        VARCHAR(64) NOT NULL,
    firmware     VARCHAR(32) NOT NULL,
    status       VARCHAR(16) NOT NULL,
    installed_at DATETIME(6) NOT NULL,
    updated_at   DATETIME(6) NOT NULL,
    PRIMARY KEY (device_id),
    KEY devices_updated_at_idx (updated_at),
    KEY devices_type_idx (type_code),
    CONSTRAINT devices_type_fk FOREIGN KEY (type_code) REFERENCES device_types (code),
    CONSTRAINT devices_status_chk CHECK (status IN ('active', 'maintenance', 'retired'))
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- +goose Down
DROP TABLE devices;
DROP TABLE device_types;
