-- Minimal LiteMaaS portal schema for the key_sync and portal_user integration tests.
-- It mirrors the upstream portal's `users`, `models`, `api_keys` and `api_key_models` tables (LiteMaaS
-- backend 0.4.0, created by its own start-up migrations); `models` keeps only the columns used here and the ones
-- the model sync of the portal stand-in (tests/support/portal_backend.py) writes.
CREATE TABLE IF NOT EXISTS users (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    username VARCHAR(255) UNIQUE NOT NULL,
    email VARCHAR(255) UNIQUE,
    full_name VARCHAR(255),
    oauth_provider VARCHAR(50) NOT NULL DEFAULT 'openshift',
    oauth_id VARCHAR(255),
    roles TEXT[] DEFAULT ARRAY['user'],
    is_active BOOLEAN DEFAULT true,
    max_budget DECIMAL(10, 2),
    tpm_limit INTEGER,
    rpm_limit INTEGER,
    budget_duration VARCHAR(20),
    sync_status VARCHAR(20) DEFAULT 'pending',
    last_login_at TIMESTAMP WITH TIME ZONE,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now(),
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT now(),
    UNIQUE (oauth_provider, oauth_id)
);

CREATE TABLE IF NOT EXISTS models (
    id VARCHAR(255) PRIMARY KEY,
    name VARCHAR(255) NOT NULL,
    provider VARCHAR(100),
    availability VARCHAR(20) DEFAULT 'available',
    api_base VARCHAR(500),
    litellm_model_id VARCHAR(255),
    backend_model_name VARCHAR(255),
    metadata JSONB DEFAULT '{}',
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now(),
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT now()
);

CREATE TABLE IF NOT EXISTS api_keys (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    subscription_id UUID,
    name VARCHAR(255),
    key_hash VARCHAR(255) UNIQUE NOT NULL,
    key_prefix VARCHAR(20) NOT NULL,
    lite_llm_key_value VARCHAR(255),
    permissions JSONB DEFAULT '{}',
    litellm_key_alias VARCHAR(255),
    max_budget DECIMAL(10, 2),
    current_spend DECIMAL(10, 2) DEFAULT 0,
    tpm_limit INTEGER,
    rpm_limit INTEGER,
    budget_duration VARCHAR(20),
    soft_budget DECIMAL(10, 2),
    max_parallel_requests INTEGER,
    model_max_budget JSONB,
    model_rpm_limit JSONB,
    model_tpm_limit JSONB,
    expires_at TIMESTAMP WITH TIME ZONE,
    is_active BOOLEAN DEFAULT true,
    revoked_at TIMESTAMP WITH TIME ZONE,
    last_sync_at TIMESTAMP WITH TIME ZONE,
    sync_status VARCHAR(20) DEFAULT 'pending' CHECK (sync_status IN ('synced', 'pending', 'error')),
    sync_error TEXT,
    tags TEXT[],
    metadata JSONB DEFAULT '{}'::jsonb,
    last_used_at TIMESTAMP WITH TIME ZONE,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now(),
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT now()
);

CREATE TABLE IF NOT EXISTS api_key_models (
    api_key_id UUID NOT NULL REFERENCES api_keys(id) ON DELETE CASCADE,
    model_id VARCHAR(255) NOT NULL REFERENCES models(id) ON DELETE CASCADE,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now(),
    PRIMARY KEY (api_key_id, model_id)
);
