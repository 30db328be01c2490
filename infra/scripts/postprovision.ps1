# azd post-provision hook (Windows twin of postprovision.sh): generates the root access policy key once, straight into
# Key Vault, makes the app's DPS_SERVICE_OWNER_KEY reference it, and prints how devices and operators connect.
$ErrorActionPreference = 'Stop'

foreach ($name in 'DPS_KEY_VAULT_NAME', 'DPS_SERVICE_OWNER_SECRET_NAME', 'AZURE_RESOURCE_GROUP', 'AZURE_FUNCTION_APP_NAME', 'DPS_GLOBAL_ENDPOINT', 'DPS_ID_SCOPE') {
  if (-not [Environment]::GetEnvironmentVariable($name)) { throw "$name is not set: run this through azd (azd up / azd provision)" }
}
$vault = $env:DPS_KEY_VAULT_NAME
$secret = $env:DPS_SERVICE_OWNER_SECRET_NAME

az keyvault secret show --vault-name $vault --name $secret --query id --output none 2>$null
if ($LASTEXITCODE -eq 0) {
  Write-Host "Root policy key: already in Key Vault $vault (secret $secret), kept."
} else {
  $keyfile = New-TemporaryFile
  try {
    $bytes = [byte[]]::new(32)
    [System.Security.Cryptography.RandomNumberGenerator]::Fill($bytes)
    [IO.File]::WriteAllText($keyfile, [Convert]::ToBase64String($bytes))
    $attempt = 1
    while ($true) {
      az keyvault secret set --vault-name $vault --name $secret --file $keyfile --encoding utf-8 `
        --content-type 'base64 key of the provisioningserviceowner access policy' --output none 2>$null
      if ($LASTEXITCODE -eq 0) { break }
      if ($attempt -ge 20) { throw "Could not write secret $secret to Key Vault $vault; run 'azd hooks run postprovision' again in a few minutes." }
      Write-Host "Waiting for Key Vault access (attempt $attempt)..."
      $attempt++
      Start-Sleep -Seconds 15
    }
  } finally {
    Remove-Item $keyfile -Force
  }
  Write-Host "Root policy key: generated into Key Vault $vault (secret $secret)."
}

az functionapp config appsettings set --resource-group $env:AZURE_RESOURCE_GROUP --name $env:AZURE_FUNCTION_APP_NAME `
  --settings "DPS_SERVICE_OWNER_KEY=@Microsoft.KeyVault(VaultName=$vault;SecretName=$secret)" --output none
if ($LASTEXITCODE -ne 0) { throw 'Could not set DPS_SERVICE_OWNER_KEY on the function app.' }

Write-Host @"

Open DPS is provisioned (the code is deployed by 'azd deploy', which 'azd up' runs next).
  Global device endpoint: $($env:DPS_GLOBAL_ENDPOINT)
  ID scope:               $($env:DPS_ID_SCOPE)
  Service connection string (contains the root key; keep it out of logs):
    `$key = az keyvault secret show --vault-name $vault --name $secret --query value --output tsv
    "HostName=$($env:DPS_GLOBAL_ENDPOINT);SharedAccessKeyName=provisioningserviceowner;SharedAccessKey=`$key"
  Link an IoT hub: see README, "Deploy to Azure".
"@
