-- +goose Up
CREATE TABLE public.locations (
    location_id text             PRIMARY KEY,
    site        text             NOT NULL,
    building    text             NOT NULL,
    floor       integer          NOT NULL,
    zone        text             NOT NULL,
    latitude    double precision NOT NULL CHECK (latitude BETWEEN -90 AND 90),
    longitude   double precision NOT NULL CHECK (longitude BETWEEN -180 AND 180),
    timezone    text             NOT NULL,
    updated_at  timestamptz      NOT NULL
);
CREATE INDEX locations_updated_at_idx ON public.locations (updated_at);

-- +goose Down
DROP TABLE public.locations;
