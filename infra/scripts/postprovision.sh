#!/bin/sh
# azd post-provision hook: generates the root access policy key (provisioningserviceowner) once, straight into Key
# Vault, makes the app's DPS_SERVICE_OWNER_KEY reference it, and prints how devices and operators connect.
# Upper-case names are azd environment values (main.bicep outputs); the key itself is never printed or stored elsewhere.
set -eu

: "${DPS_KEY_VAULT_NAME:?run this through azd (azd up / azd provision)}"
: "${DPS_SERVICE_OWNER_SECRET_NAME:?missing main.bicep output}"
: "${AZURE_RESOURCE_GROUP:?missing main.bicep output}"
: "${AZURE_FUNCTION_APP_NAME:?missing main.bicep output}"
: "${DPS_GLOBAL_ENDPOINT:?missing main.bicep output}"
: "${DPS_ID_SCOPE:?missing main.bicep output}"

vault=$DPS_KEY_VAULT_NAME
secret=$DPS_SERVICE_OWNER_SECRET_NAME

if az keyvault secret show --vault-name "$vault" --name "$secret" --query id --output none 2>/dev/null; then
  echo "Root policy key: already in Key Vault $vault (secret $secret), kept."
else
  # Through a private file, not the command line (visible to other local users) nor the azd environment.
  umask 077
  keyfile=$(mktemp)
  trap 'rm -f "$keyfile"' EXIT INT TERM
  openssl rand -base64 32 | tr -d '\n' >"$keyfile"
  # The Key Vault Secrets Officer assignment made by this provisioning can take a few minutes to apply.
  attempt=1
  until az keyvault secret set --vault-name "$vault" --name "$secret" --file "$keyfile" --encoding utf-8 \
    --content-type 'base64 key of the provisioningserviceowner access policy' --output none 2>/dev/null; do
    if [ "$attempt" -ge 20 ]; then
      echo "Could not write secret $secret to Key Vault $vault (role assignment not yet effective?)." >&2
      echo "Run 'azd hooks run postprovision' again in a few minutes." >&2
      exit 1
    fi
    echo "Waiting for Key Vault access (attempt $attempt)…"
    attempt=$((attempt + 1))
    sleep 15
  done
  rm -f "$keyfile"
  echo "Root policy key: generated into Key Vault $vault (secret $secret)."
fi

# Setting the reference again makes the platform resolve it now (the secret may not have existed at provisioning).
az functionapp config appsettings set --resource-group "$AZURE_RESOURCE_GROUP" --name "$AZURE_FUNCTION_APP_NAME" \
  --settings "DPS_SERVICE_OWNER_KEY=@Microsoft.KeyVault(VaultName=$vault;SecretName=$secret)" --output none

cat <<EOM

Open DPS is provisioned (the code is deployed by 'azd deploy', which 'azd up' runs next).
  Global device endpoint: $DPS_GLOBAL_ENDPOINT
  ID scope:               $DPS_ID_SCOPE
  Service connection string (contains the root key; keep it out of logs):
    echo "HostName=$DPS_GLOBAL_ENDPOINT;SharedAccessKeyName=provisioningserviceowner;SharedAccessKey=\$(az keyvault secret show --vault-name $vault --name $secret --query value --output tsv)"
  Link an IoT hub: see README, "Deploy to Azure".
EOM
