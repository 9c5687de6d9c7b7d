-- Minimal LiteMaaS portal schema for the key_sync and portal_user integration tests.
-- It mirrors the columns of the upstream portal's `users` and `api_keys` tables (LiteMaaS backend
-- 0.4.0, created by its own start-up migrations); only what the modules read or write is kept.
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

CREATE TABLE IF NOT EXISTS api_keys (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    subscription_id UUID,
    name VARCHAR(255),
    key_hash VARCHAR(255) UNIQUE NOT NULL,
    key_prefix VARCHAR(50),
    lite_llm_key_value TEXT,
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
    sync_status VARCHAR(20) DEFAULT 'pending',
    metadata JSONB DEFAULT '{}'::jsonb,
    last_used_at TIMESTAMP WITH TIME ZONE,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now(),
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT now()
);
